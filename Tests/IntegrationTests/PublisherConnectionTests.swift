import Foundation
import Shared
import Testing

/// A publisher's connection stays open between its requests (HTTP/1.1 keep-alive, `--keepalive-timeout`), so a
/// backend that publishes often pays for one connection; every other connection the supervisor serves closes after
/// its answer, and a kept one never carries a stream or topic request.
@Suite("Publishers' connections kept between requests")
struct PublisherConnectionTests {
    func publishBytes(_ hub: HubProcess, _ body: String, headers: [String: String] = [:]) async throws -> [UInt8] {
        let publisher = ["x-auth-token": try await hub.token("backend", publisher: true), "Content-Type": "application/json"]
        return TestHTTP.requestBytes("POST", "/api/sse/publish", headers: publisher.merging(headers) { $1 }, body: body)
    }

    func toKept(_ n: Int) -> String { #"{"event":"kept","userId":"kept","data":\#(n)}"# }

    @Test func aPublisherPublishesOneEventAfterAnotherOnOneConnection() async throws {
        let hub = try await HubProcess.start(workers: 2)
        defer { Task { try await hub.stop() } }
        let stream = try await hub.openStream("kept")
        let connection = try await TestConnection.open(port: hub.port)
        defer { Task { await connection.close() } }
        for n in 1...3 {
            try await connection.send(try await publishBytes(hub, toKept(n)))
            let answer = try await connection.responses(n)[n - 1]
            #expect(answer.status == 200 && answer.text == #"{"success":true}"#)
            #expect(answer.headers["connection"] == nil && answer.headers["keep-alive"] == "timeout=30", "\(answer.headers)")
        }
        // Two in one write (pipelined): answered in order, the second once the first is.
        try await connection.send(try await publishBytes(hub, toKept(4)) + (try await publishBytes(hub, toKept(5))), requests: 2)
        #expect(try await connection.responses(5).map(\.status) == [200, 200, 200, 200, 200])
        #expect(try await stream.waitForEvent("kept", count: 5).map(\.data) == ["1", "2", "3", "4", "5"])
        // A body the publisher got wrong is its mistake to correct, not a reason to hang up.
        try await connection.send(try await publishBytes(hub, #"{"event":"kept","userId":"kept""#))
        #expect(try await connection.responses(6)[5].status == 400)
        // The last request asks to close: answered, then closed.
        try await connection.send(try await publishBytes(hub, toKept(7), headers: ["Connection": "close"]))
        let last = try await connection.responses(7)[6]
        #expect(last.status == 200 && last.headers["connection"] == "close")
        try await waitUntil("the server to close the connection") { connection.snapshot.closed }
        #expect(try await stream.waitForEvent("kept", count: 6).map(\.data).last == "7")
    }

    @Test func aStreamRequestOnAKeptConnectionIsTurnedAwayWith421() async throws {
        let hub = try await HubProcess.start(workers: 1)
        defer { Task { try await hub.stop() } }
        let connection = try await TestConnection.open(port: hub.port)
        defer { Task { await connection.close() } }
        try await connection.send(try await publishBytes(hub, toKept(1)))
        #expect(try await connection.responses(1)[0].status == 200)
        let stream = TestHTTP.requestBytes("GET", "/api/sse/stream?token=\(try await hub.token("kept"))", headers: ["Accept": "text/event-stream"])
        try await connection.send(stream)
        let refused = try await connection.responses(2)[1]
        #expect(refused.status == 421 && refused.headers["connection"] == "close")
        #expect(refused.message?.contains("new connection") == true, "\(refused.text)")
        try await waitUntil("the server to close the connection") { connection.snapshot.closed }
        // On a connection of its own, the same request is a stream.
        let opened = try await hub.openStream("kept")
        await opened.close()
    }

    @Test func answersToAnyoneButAPublisherCloseTheirConnection() async throws {
        let hub = try await HubProcess.start(workers: 1)
        defer { Task { try await hub.stop() } }
        let health = try await TestHTTP.request(port: hub.port, "GET", "/api/health")
        #expect(health.status == 200 && health.headers["connection"] == "close")
        let user = try await TestConnection.open(port: hub.port)
        let asUser = ["x-auth-token": try await hub.token("someone"), "Content-Type": "application/json"]
        try await user.send(TestHTTP.requestBytes("POST", "/api/sse/publish", headers: asUser, body: toKept(1)))
        let refused = try await user.response()
        #expect(refused.status == 403 && refused.headers["connection"] == "close")
        try await waitUntil("the refused connection to close") { user.snapshot.closed }
    }

    /// The accept thread bounds only a connection's first head; SwiftNIO bounds a kept connection's later ones to the
    /// same `--max-head-bytes`, with the same answer.
    @Test func aLaterRequestsHeadOverTheLimitIsAnswered431() async throws {
        let hub = try await HubProcess.start(workers: 1, arguments: ["--max-head-bytes", "4096"])
        defer { Task { try await hub.stop() } }
        let connection = try await TestConnection.open(port: hub.port)
        defer { Task { await connection.close() } }
        try await connection.send(try await publishBytes(hub, toKept(1), headers: ["X-Padding": String(repeating: "p", count: 3000)]))
        #expect(try await connection.responses(1)[0].status == 200)
        try await connection.send(try await publishBytes(hub, toKept(2), headers: ["X-Padding": String(repeating: "p", count: 5000)]))
        let refused = try await connection.responses(2)[1]
        #expect(refused.status == 431 && refused.headers["connection"] == "close", "\(refused.status) \(refused.text)")
        try await waitUntil("the server to close the connection") { connection.snapshot.closed }
        #expect(try await hub.publish(toKept(3)).status == 200)
    }

    @Test func anIdleKeptConnectionClosesAfterTheKeepAliveTimeout() async throws {
        let hub = try await HubProcess.start(workers: 1, arguments: ["--keepalive-timeout", "1"])
        defer { Task { try await hub.stop() } }
        let connection = try await TestConnection.open(port: hub.port)
        try await connection.send(try await publishBytes(hub, toKept(1)))
        #expect(try await connection.responses(1)[0].headers["keep-alive"] == "timeout=1")
        try await waitUntil("the idle connection to close", timeout: .seconds(10)) { connection.snapshot.closed }
    }

    @Test func keepAliveTimeoutZeroClosesEveryConnection() async throws {
        let hub = try await HubProcess.start(workers: 1, arguments: ["--keepalive-timeout", "0"])
        defer { Task { try await hub.stop() } }
        let connection = try await TestConnection.open(port: hub.port)
        try await connection.send(try await publishBytes(hub, toKept(1)))
        let answer = try await connection.response()
        #expect(answer.status == 200 && answer.headers["connection"] == "close")
        try await waitUntil("the connection to close") { connection.snapshot.closed }
    }

    /// The new program cannot take over SwiftNIO's channels: an upgrade closes kept connections at once (an idle one)
    /// instead of waiting out its 5 s for them, and the publisher reconnects for its next publish.
    @Test func anUpgradeClosesAnIdleKeptConnectionWithoutWaitingForIt() async throws {
        let hub = try await HubProcess.start(workers: 1)
        defer { Task { try await hub.stop() } }
        let connection = try await TestConnection.open(port: hub.port)
        try await connection.send(try await publishBytes(hub, toKept(1)))
        #expect(try await connection.responses(1)[0].status == 200)
        kill(hub.process.processIdentifier, SIGHUP)
        try await waitUntil("the upgrade's reload", timeout: .seconds(30)) { !hub.logged("event=reload-done").isEmpty }
        try await waitUntil("the kept connection to close") { connection.snapshot.closed }
        #expect(hub.logged("event=upgrade-requests-cut").isEmpty, "the upgrade waited for a kept connection")
        #expect(hub.logged("event=upgrade-done").count == 1)
        #expect(try await hub.publish(toKept(2)).status == 200)
    }
}
