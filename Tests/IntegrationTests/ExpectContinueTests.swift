import Foundation
import Shared
import Testing

/// A client that sends `Expect: 100-continue` (curl does, for any body over 1 KiB) holds its body back until the
/// server says `100 Continue`: each request it sends must get that interim answer, or a final one from its head alone.
@Suite("Expect: 100-continue")
struct ExpectContinueTests {
    /// The request's head alone, and its body, as a client that expects 100-continue sends them.
    func split(_ request: [UInt8]) -> (head: [UInt8], body: [UInt8]) {
        let end = request.indices.first { Array(request[$0..<min($0 + 4, request.count)]) == Array("\r\n\r\n".utf8) }! + 4
        return (Array(request[..<end]), Array(request[end...]))
    }

    /// Sends the head, waits for `100 Continue`, then sends the body; returns the final answer.
    func sendExpectingContinue(_ request: [UInt8], on connection: TestConnection, answers: Int = 1) async throws -> TestHTTP.Response {
        let (head, body) = split(request)
        try await connection.send(head)
        try await waitUntil("100 Continue") {
            if connection.snapshot.closed { throw TimedOut(description: "closed before 100 Continue: \(connection.snapshot.responses)") }
            return connection.snapshot.interim.count == answers
        }
        #expect(connection.snapshot.interim.allSatisfy { $0 == 100 } && connection.snapshot.responses.count == answers - 1)
        try await connection.send(body, requests: 0)  // the decoder was told of this request with its head
        return try await connection.responses(answers)[answers - 1]
    }

    @Test func aPublishWaitingForContinueIsAskedForItsBodyOnNewAndKeptConnections() async throws {
        let hub = try await HubProcess.start(workers: 1)
        defer { Task { try await hub.stop() } }
        let stream = try await hub.openStream("waiting")
        defer { Task { await stream.close() } }
        let connection = try await TestConnection.open(port: hub.port)
        defer { Task { await connection.close() } }
        let headers = [
            "x-auth-token": try await hub.token("backend", publisher: true), "Content-Type": "application/json", "Expect": "100-continue",
        ]
        let large = String(repeating: "x", count: 2048)  // what makes curl expect 100-continue
        for n in 1...2 {
            let publish = TestHTTP.requestBytes(
                "POST", "/api/sse/publish", headers: headers, body: #"{"event":"waited","userId":"waiting","data":{"n":\#(n),"pad":"\#(large)"}}"#)
            let answer = try await sendExpectingContinue(publish, on: connection, answers: n)
            #expect(answer.status == 200 && answer.text == #"{"success":true}"#, "\(answer.text)")
        }
        #expect(try await stream.waitForEvent("waited", count: 2).count == 2)
    }

    @Test func aTopicRequestWaitingForContinueIsAskedForItsBodyByItsWorker() async throws {
        let hub = try await HubProcess.start(workers: 2)
        defer { Task { try await hub.stop() } }
        let stream = try await hub.openStream("waiting")
        defer { Task { await stream.close() } }
        let connection = try await TestConnection.open(port: hub.port)
        defer { Task { await connection.close() } }
        let subscribe = TestHTTP.requestBytes(
            "POST", "/api/sse/subscribe", headers: ["x-auth-token": try await hub.token("waiting"), "Expect": "100-Continue"],
            body: #"{"topics":["news"]}"#)
        let answer = try await sendExpectingContinue(subscribe, on: connection)
        #expect(answer.status == 200 && answer.json["topics"] == .array([.string("news")]), "\(answer.text)")
        #expect(try await hub.publish(#"{"event":"headline","topic":"news","data":1}"#).status == 200)
        #expect(try await stream.waitForEvent("headline").first?.data == "1")
    }

    @Test func anExpectationTheServerCannotMeetOrABodyTooLargeIsAnsweredFromTheHead() async throws {
        let hub = try await HubProcess.start(workers: 1)
        defer { Task { try await hub.stop() } }
        let publisher = ["x-auth-token": try await hub.token("backend", publisher: true), "Content-Type": "application/json"]
        let requests = [
            // Another expectation: 417, whether to the supervisor or to a worker.
            (TestHTTP.requestBytes("POST", "/api/sse/publish", headers: publisher.merging(["Expect": "something-else"]) { $1 }, body: "{}"), 417),
            (
                TestHTTP.requestBytes(
                    "POST", "/api/sse/subscribe", headers: ["x-auth-token": try await hub.token("u"), "Expect": "100-continue, other"],
                    body: "{}"), 417
            ),
            // A body announced over the limit: refused at once, so the client need not send it.
            (
                Array("POST /api/sse/publish HTTP/1.1\r\nHost: h\r\nx-auth-token: \(publisher["x-auth-token"]!)\r\nExpect: 100-continue\r\nContent-Length: 100000\r\n\r\n".utf8),
                413
            ),
        ]
        for (request, status) in requests {
            let connection = try await TestConnection.open(port: hub.port)
            defer { Task { await connection.close() } }
            try await connection.send(split(request).head)
            let answer = try await connection.response()
            #expect(answer.status == status && connection.snapshot.interim.isEmpty, "\(answer.status) \(answer.text)")
            #expect(answer.headers["connection"] == "close")
        }
        // Still serving.
        #expect(try await hub.publish(#"{"event":"after","data":1}"#).status == 200)
    }

    @Test func curlPublishesALargeBodyWithoutWaitingOutItsExpectTimeout() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("sse-ctl-\(UUID().uuidString).sock").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let hub = try await HubProcess.start(workers: 1, arguments: ["--control-socket", path])
        defer { Task { try await hub.stop() } }
        let stream = try await hub.openStream("curled")
        defer { Task { await stream.close() } }
        let body = #"{"event":"curled","userId":"curled","data":"\#(String(repeating: "y", count: 4096))"}"#
        let token = try await hub.token("backend", publisher: true)
        // curl says in its trace whether the server answered 100 (else: "Done waiting for 100-continue", after 1 s).
        // Named explicitly: curl 8 expects it only for bodies over 1 MiB.
        for (url, extra) in [("http://127.0.0.1:\(hub.port)/api/sse/publish", ["-H", "x-auth-token: \(token)"]), ("http://hub/publish", ["--unix-socket", path])] {
            let curl = try await ChildProcess.run(
                URL(fileURLWithPath: "/usr/bin/curl"),
                ["-sS", "-v", "-H", "Content-Type: application/json", "-H", "Expect: 100-continue", "--data-binary", body] + extra + [url])
            #expect(curl.status == 0 && curl.output.contains(#""success":true"#), "\(curl.output) \(curl.errors)")
            #expect(curl.errors.contains("HTTP/1.1 100 Continue") && !curl.errors.contains("Done waiting"), "\(curl.errors)")
        }
        #expect(try await stream.waitForEvent("curled", count: 2).count == 2)
    }
}
