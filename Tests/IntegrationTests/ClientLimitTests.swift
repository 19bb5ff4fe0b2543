import Foundation
import Shared
import Testing

@Suite("Limits per client address: 429 before any token work, other addresses still served", .serialized)
struct ClientLimitTests {
    /// One address opening connections faster than `--conn-rate-per-ip` gets 429 with a JSON body and
    /// `Retry-After`, logged once with counts; another loopback address is served all along.
    @Test func newConnectionsOverTheRateAreRefused() async throws {
        let started = ContinuousClock.now
        let hub = try await HubProcess.start(workers: 1, arguments: ["--conn-rate-per-ip", "2"])
        defer { Task { try await hub.stop() } }
        var statuses: [Int] = []
        var refused: TestHTTP.Response?
        let burstStarted = ContinuousClock.now
        // A stream request: refused, it costs no token verification (the token here is not even valid).
        for _ in 0..<20 {
            let response = try await TestHTTP.request(port: hub.port, "GET", "/api/sse/stream?token=x", from: "127.0.0.3")
            statuses.append(response.status)
            if response.status == 429 { refused = response }
        }
        let burst = burstStarted.duration(to: .now).components
        let burstSeconds = Double(burst.seconds) + Double(burst.attoseconds) * 1e-18
        #expect(Set(statuses).isSubset(of: [401, 429]), "\(statuses)")
        // A burst of 2, then 2 a second.
        #expect(statuses.filter { $0 == 401 }.count <= 2 + Int((2 * burstSeconds).rounded(.up)), "\(statuses) in \(burstSeconds) s")
        #expect(statuses.contains(429))
        let response = try #require(refused)
        #expect(response.json["success"] == .bool(false))
        #expect(response.message == "Too many new connections from this address; retry shortly")
        #expect(response.headers["retry-after"] == "1")
        #expect(response.headers["content-type"]?.hasPrefix("application/json") == true)

        let other = try await TestHTTP.request(port: hub.port, "GET", "/api/health", from: "127.0.0.4")
        #expect(other.status == 200)
        // (The hub's start-up health checks, from 127.0.0.1, may have been limited too.)
        try await waitUntil("the refusals logged") { hub.log.contains("last-address=127.0.0.3") }
        // Refusals are logged at most once a second, with counts: never a line per connection.
        let seconds = started.duration(to: .now).components.seconds
        #expect(hub.log.components(separatedBy: "event=client-limited").count - 1 <= seconds + 1, "\(hub.log)")

        // The bucket refills: the same address is served again.
        try await waitUntil("127.0.0.3 served again") {
            try await TestHTTP.request(port: hub.port, "GET", "/api/health", from: "127.0.0.3").status == 200
        }
    }

    /// An address holding `--max-conns-per-ip` connections whose heads are not whole (a slowloris) gets 429 for
    /// the next; another address is served; once one of them closes, the address is served again.
    @Test func connectionsOverTheConcurrentLimitAreRefused() async throws {
        let hub = try await HubProcess.start(workers: 1, arguments: ["--max-conns-per-ip", "3"])
        defer { Task { try await hub.stop() } }
        var slow: [TestConnection] = []
        for _ in 0..<3 {
            let connection = try await TestConnection.open(port: hub.port, from: "127.0.0.5")
            try await connection.send(Array("GET /api/health HTTP/1.1\r\nHost: x\r\n".utf8))  // never finished
            slow.append(connection)
        }
        // The three are accepted (TCP_DEFER_ACCEPT: once their first bytes arrive) in order, so the fourth
        // may race them into the accept queue: retry until it is refused, with a deadline.
        var refused: TestHTTP.Response?
        try await waitUntil("a fourth connection refused") {
            let response = try await TestHTTP.request(port: hub.port, "GET", "/api/health", from: "127.0.0.5")
            if response.status == 429 { refused = response }
            return refused != nil
        }
        #expect(refused?.message == "Too many connections from this address; retry shortly")
        #expect(refused?.headers["retry-after"] == "1")
        #expect(refused?.json["success"] == .bool(false))
        #expect(try await TestHTTP.request(port: hub.port, "GET", "/api/health", from: "127.0.0.6").status == 200)
        #expect(slow.allSatisfy { !$0.snapshot.closed }, "the held connections are not touched")

        await slow[0].close()
        try await waitUntil("127.0.0.5 served again") {
            try await TestHTTP.request(port: hub.port, "GET", "/api/health", from: "127.0.0.5").status == 200
        }
        for connection in slow.dropFirst() { await connection.close() }
    }

    /// Without the options, one address may open connections as fast as it likes and hold as many as it likes.
    @Test func byDefaultNothingIsLimited() async throws {
        let hub = try await HubProcess.start(workers: 1)
        defer { Task { try await hub.stop() } }
        var slow: [TestConnection] = []
        for _ in 0..<20 {
            let connection = try await TestConnection.open(port: hub.port)
            try await connection.send(Array("GET /api/health HTTP/1.1\r\n".utf8))
            slow.append(connection)
        }
        for _ in 0..<50 { #expect(try await TestHTTP.request(port: hub.port, "GET", "/api/health").status == 200) }
        #expect(hub.logged("event=client-limited").isEmpty)
        #expect(hub.logged("event=client-limits").isEmpty)
        for connection in slow { await connection.close() }
    }

    /// Once handed to a worker a connection is out of the supervisor's sight, so a worker bounds what one address
    /// holds on it (`--max-worker-conns-per-ip`): past it, 429; another address, or the same once one closes, is served.
    @Test func aWorkerBoundsTheConnectionsOneAddressHoldsOnIt() async throws {
        let hub = try await HubProcess.start(workers: 1, arguments: ["--max-worker-conns-per-ip", "2"])
        defer { Task { try await hub.stop() } }
        func stream(_ user: String, from source: String) async throws -> TestConnection {
            let connection = try await TestConnection.open(port: hub.port, from: source)
            try await connection.send(TestHTTP.requestBytes("GET", "/api/sse/stream?token=\(try await hub.token(user))"))
            return connection
        }
        let first = try await stream("a1", from: "127.0.0.5")
        let second = try await stream("a2", from: "127.0.0.5")
        try await waitUntil("two streams") { try await hub.health().services.sse.totalClients == 2 }
        let third = try await stream("a3", from: "127.0.0.5")
        let refused = try await third.response()
        #expect(refused.status == 429)
        #expect(refused.message == "Too many connections from this address; retry shortly")
        #expect(refused.headers["retry-after"] == "1")
        // A subscribe from that address is refused too; from another address everything is served.
        let subscribe = try await TestHTTP.request(
            port: hub.port, "POST", "/api/sse/subscribe", headers: ["x-auth-token": try await hub.token("a1")], body: #"{"topics":["t"]}"#,
            from: "127.0.0.5")
        #expect(subscribe.status == 429)
        let elsewhere = try await stream("b1", from: "127.0.0.6")
        try await waitUntil("the other address served") { try await hub.health().services.sse.totalClients == 3 }
        // One closes: the address has room again.
        await first.close()
        try await waitUntil("one stream closed") { try await hub.health().services.sse.totalClients == 2 }
        let again = try await stream("a3", from: "127.0.0.5")
        try await waitUntil("the address served again") { try await hub.health().services.sse.totalClients == 3 }
        try await waitUntil("the refusals logged") { hub.log.contains("event=client-limited") && hub.log.contains("refused=") }
        for connection in [second, elsewhere, again] { await connection.close() }
    }
}
