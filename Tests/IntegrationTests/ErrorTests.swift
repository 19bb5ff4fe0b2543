import Foundation
import Crypto
import Shared
import Testing

@Suite("Every error gets its status and JSON body, and the server keeps serving", .serialized)
struct ErrorTests {
    /// A token signed with HS256 but naming another algorithm, or none, in its header.
    static func token(alg: String, secret: String, claims: String) -> String {
        func base64URL(_ data: Data) -> String {
            data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
                .replacingOccurrences(of: "=", with: "")
        }
        let signingInput = base64URL(Data(#"{"alg":"\#(alg)","typ":"JWT"}"#.utf8)) + "." + base64URL(Data(claims.utf8))
        if alg == "none" { return signingInput + "." }
        let mac = HMAC<SHA256>.authenticationCode(for: Data(signingInput.utf8), using: SymmetricKey(data: Data(secret.utf8)))
        return signingInput + "." + base64URL(Data(mac))
    }

    /// The accept thread remembers verified tokens (a reconnect storm presents them again); a remembered token must
    /// still be refused once its exp has passed.
    @Test func aTokenThatStreamedBeforeIsRefusedOnceExpired() async throws {
        let hub = try await HubProcess.start(workers: 1)
        defer { Task { try await hub.stop() } }
        let token = try await hub.token("short-lived", lifetime: 2)
        let expiry = Date().addingTimeInterval(2)
        let stream = try await SSETestStream.open(port: hub.port, target: "/api/sse/stream?token=\(token)")
        try await stream.waitForEvent("connected")
        await stream.close()
        let again = try await SSETestStream.open(port: hub.port, target: "/api/sse/stream?token=\(token)")
        try await again.waitForEvent("connected")
        await again.close()
        try await waitUntil("the token to expire", timeout: .seconds(10)) { Date() > expiry.addingTimeInterval(1) }
        let refused = try await TestHTTP.request(port: hub.port, "GET", "/api/sse/stream?token=\(token)")
        #expect(refused.status == 401)
        #expect(String(decoding: refused.body, as: UTF8.self).contains("Token is not valid"))
    }

    @Test func authenticationAndRoutingErrors() async throws {
        let hub = try await HubProcess.start(workers: 3)
        defer { Task { try await hub.stop() } }
        let bystander = try await hub.openStream("bystander")
        let user = try await hub.token("u1")
        let publisher = try await hub.token("backend", publisher: true)
        let expired = try await hub.token("u1", lifetime: -60)
        let otherSecret = try await TokenSigner(secret: "another-secret-another-secret-0123").sign(userID: "u1")
        let farFuture = Int(Date().timeIntervalSince1970) + 3600
        let noneAlg = Self.token(alg: "none", secret: HubProcess.secret, claims: #"{"sub":"u1","exp":\#(farFuture)}"#)
        let hs512Header = Self.token(alg: "HS512", secret: HubProcess.secret, claims: #"{"sub":"u1","exp":\#(farFuture)}"#)
        let notYetValid = Self.token(alg: "HS256", secret: HubProcess.secret, claims: #"{"sub":"u1","nbf":\#(farFuture)}"#)
        let noUser = try await hub.token(nil)

        struct Case {
            var method: String
            var target: String
            var headers: [String: String] = [:]
            var body: String? = nil
            var status: Int
            var message: String
        }
        let json = ["Content-Type": "application/json"]
        let cases: [Case] = [
            Case(method: "GET", target: "/api/sse/stream", status: 401, message: "No token, authorization denied"),
            Case(method: "GET", target: "/api/sse/stream?token=garbage", status: 401, message: "Token is not valid"),
            Case(method: "GET", target: "/api/sse/stream?token=\(expired)", status: 401, message: "Token is not valid"),
            Case(method: "GET", target: "/api/sse/stream?token=\(otherSecret)", status: 401, message: "Token is not valid"),
            Case(method: "GET", target: "/api/sse/stream?token=\(noneAlg)", status: 401, message: "Token is not valid"),
            Case(method: "GET", target: "/api/sse/stream?token=\(hs512Header)", status: 401, message: "Token is not valid"),
            Case(method: "GET", target: "/api/sse/stream?token=\(notYetValid)", status: 401, message: "Token is not valid"),
            Case(method: "GET", target: "/api/sse/stream?token=\(noUser)", status: 401, message: "Token names no user (sub, user.id or id)"),
            Case(method: "POST", target: "/api/sse/subscribe", headers: json, body: #"{"topics":["a"]}"#, status: 401, message: "No token, authorization denied"),
            Case(method: "POST", target: "/api/sse/publish", headers: json.merging(["x-auth-token": user]) { $1 }, body: #"{"event":"x"}"#, status: 403, message: "A publisher token is required"),
            Case(method: "GET", target: "/api/sse/stats", headers: ["Authorization": "Bearer \(user)"], status: 403, message: "A publisher token is required"),
            Case(method: "GET", target: "/api/sse/stats", status: 401, message: "No token, authorization denied"),
            Case(method: "POST", target: "/api/sse/subscribe", headers: ["x-auth-token": user], body: "{not json", status: 400, message: "Malformed JSON body"),
            Case(method: "POST", target: "/api/sse/subscribe", headers: ["x-auth-token": user], body: #"{"topics":"news"}"#, status: 400, message: APIError.invalidTopics.message),
            Case(method: "POST", target: "/api/sse/subscribe", headers: ["x-auth-token": user], body: #"{"topics":["ok","bad topic"]}"#, status: 400, message: APIError.invalidTopics.message),
            Case(method: "POST", target: "/api/sse/subscribe", headers: ["x-auth-token": user], body: #"{"topics":["\#(String(repeating: "t", count: 129))"]}"#, status: 400, message: APIError.invalidTopics.message),
            Case(method: "POST", target: "/api/sse/unsubscribe", headers: ["x-auth-token": user], body: "{\"topics\":[" + (0...100).map { "\"t\($0)\"" }.joined(separator: ",") + "]}", status: 400, message: APIError.invalidTopics.message),
            Case(method: "POST", target: "/api/sse/publish", headers: ["x-auth-token": publisher], body: "[1,2", status: 400, message: "Malformed JSON body"),
            Case(method: "POST", target: "/api/sse/publish", headers: ["x-auth-token": publisher], body: "[1,2]", status: 400, message: "body must be a JSON object"),
            Case(method: "POST", target: "/api/sse/publish", headers: ["x-auth-token": publisher], body: #"{"event":"bad event"}"#, status: 400, message: "event must be 1-64 characters [A-Za-z0-9_.:-]"),
            Case(method: "POST", target: "/api/sse/publish", headers: ["x-auth-token": publisher], body: #"{"data":1}"#, status: 400, message: "event must be 1-64 characters [A-Za-z0-9_.:-]"),
            Case(method: "POST", target: "/api/sse/publish", headers: ["x-auth-token": publisher], body: #"{"event":"e","topic":"t","userId":"u"}"#, status: 400, message: "topic and userId cannot be combined"),
            Case(method: "POST", target: "/api/sse/publish", headers: ["x-auth-token": publisher], body: #"{"event":"e","topic":"no spaces"}"#, status: 400, message: "topic must be 1-128 characters [A-Za-z0-9_.:-]"),
            Case(method: "POST", target: "/api/sse/publish", headers: ["x-auth-token": publisher], body: #"{"event":"e","userId":1.5}"#, status: 400, message: "userId must be a non-empty string (at most 1024 bytes) or an integer"),
            Case(method: "POST", target: "/api/sse/publish", headers: ["x-auth-token": publisher], body: "{\"event\":\"e\",\"data\":\"\(String(repeating: "x", count: 70_000))\"}", status: 413, message: "Request body over 64 KiB"),
            Case(method: "POST", target: "/api/sse/subscribe", headers: ["x-auth-token": user], body: "{\"topics\":[\"\(String(repeating: "x", count: 70_000))\"]}", status: 413, message: "Request body over 64 KiB"),
            Case(method: "GET", target: "/nowhere", status: 404, message: "Not found"),
            Case(method: "GET", target: "/api/sse/publish", status: 405, message: "Method not allowed (use POST)"),
            Case(method: "DELETE", target: "/api/health", status: 405, message: "Method not allowed (use GET)"),
            Case(method: "POST", target: "/api/sse/stream?token=\(user)", status: 405, message: "Method not allowed (use GET)"),
        ]
        for item in cases {
            let response = try await TestHTTP.request(port: hub.port, item.method, item.target, headers: item.headers, body: item.body)
            #expect(response.status == item.status, "\(item.method) \(item.target.prefix(60)) → \(response.status) \(response.text.prefix(200))")
            #expect(response.json["success"] == .bool(false), "\(item.method) \(item.target.prefix(60))")
            #expect(response.message == item.message, "\(item.method) \(item.target.prefix(60))")
            #expect(response.headers["content-type"]?.hasPrefix("application/json") == true)
            if item.status == 405 { #expect(response.headers["allow"] != nil) }
        }

        // A head over the limit: 431, from the supervisor, before any parsing.
        let huge = TestHTTP.requestBytes("GET", "/api/sse/stream", headers: ["X-Padding": String(repeating: "p", count: 9000)])
        let tooLarge = try await TestHTTP.raw(port: hub.port, huge)
        #expect(tooLarge.status == 431)
        #expect(tooLarge.json["success"] == .bool(false))
        // Garbage that is not HTTP at all.
        let garbage = try await TestHTTP.raw(port: hub.port, Array("\u{01}\u{02}hello there\r\n\r\n".utf8))
        #expect(garbage.status == 400)

        // Through all of that, the server kept serving: nobody crashed and the bystander's stream is intact.
        let health = try await hub.health()
        #expect(health.status == "healthy")
        #expect(health.workers.allSatisfy { $0.restarts == 0 })
        #expect(try await hub.publish(#"{"event":"still-here","data":true}"#).status == 200)
        try await bystander.waitForEvent("still-here")
        #expect(!bystander.isClosed)
    }

    /// A connection whose worker is down (between its death and its restart, which waits at least 100 ms) is
    /// turned away once `--worker-wait-ms` has passed: a subscribe with a 503; a stream (whose request the
    /// supervisor has already read) with the answer EventSource retries by itself: `retry:`, `event: unavailable`,
    /// end of stream (to a 503 a browser would give up for good). Then the restarted worker serves again.
    /// The restart waits 4 s (`--worker-restart-delay-ms`), so a loaded machine still asks inside the window.
    @Test func aConnectionWhoseWorkerIsDownIsTurnedAway() async throws {
        let hub = try await HubProcess.start(
            workers: 1,
            arguments: [
                "--worker-wait-ms", "10", "--worker-restart-delay-ms", "4000", "--cors-origin", "https://app.example",
                "--retry-ms", "2500",
            ])
        defer { Task { try await hub.stop() } }
        let pid = try #require(try await hub.health().workers.first?.pid)
        kill(pid, SIGKILL)
        try await waitUntil("the worker seen down", timeout: .seconds(5), poll: .milliseconds(2)) {
            try await hub.health().workers.first?.status != "up"
        }
        let subscribe = try await TestHTTP.request(
            port: hub.port, "POST", "/api/sse/subscribe", headers: ["x-auth-token": try await hub.token("waiting")],
            body: #"{"topics":["t"]}"#)
        #expect(subscribe.status == 503)
        #expect(subscribe.message == "The worker for this user is unavailable; retry shortly")

        let stream = try await SSETestStream.open(
            port: hub.port, target: "/api/sse/stream?token=\(try await hub.token("waiting"))", headers: ["Origin": "https://app.example"])
        let unavailable = try await stream.waitForEvent("unavailable")
        try await stream.waitForClose()
        let state = stream.connection.snapshot
        #expect(state.status == 200)
        #expect(state.headers["content-type"] == "text/event-stream")
        #expect(state.headers["access-control-allow-origin"] == "https://app.example")
        #expect(state.ended, "the chunked body is ended, so the client sees a clean end and reconnects")
        #expect(String(decoding: state.body, as: UTF8.self).hasPrefix("retry: 2500\n"))
        let data = try JSONDecoder().decode([String: JSONValue].self, from: Data(try #require(unavailable.first).data.utf8))
        #expect(data["reason"] == .string("worker-unavailable"))
        #expect(data["retryMs"] == .integer(2500))
        try await hub.waitForHealthy(workers: 1)
        _ = try await hub.openStream("waiting")
    }

    @Test func aSlowHeadIsTimedOut() async throws {
        let hub = try await HubProcess.start(workers: 1, arguments: ["--head-timeout", "1"])
        defer { Task { try await hub.stop() } }
        let connection = try await TestConnection.open(port: hub.port)
        try await connection.send(Array("GET /api/health HTTP/1.1\r\nHost: x\r\n".utf8))  // never finished
        let response = try await connection.response(timeout: .seconds(10))
        #expect(response.status == 408)
    }

    @Test func corsHeadersOnlyWhenConfigured() async throws {
        let hub = try await HubProcess.start(workers: 1, arguments: ["--cors-origin", "https://app.example"])
        defer { Task { try await hub.stop() } }
        let preflight = try await TestHTTP.request(
            port: hub.port, "OPTIONS", "/api/sse/subscribe",
            headers: ["Origin": "https://app.example", "Access-Control-Request-Method": "POST"])
        #expect(preflight.status == 204)
        #expect(preflight.headers["access-control-allow-origin"] == "https://app.example")
        #expect(preflight.headers["access-control-allow-headers"]?.contains("x-auth-token") == true)
        #expect(preflight.headers["access-control-allow-headers"]?.contains("Last-Event-ID") == true)

        let stream = try await SSETestStream.open(
            port: hub.port, target: "/api/sse/stream?token=\(try await hub.token("eve"))", headers: ["Origin": "https://app.example"])
        try await stream.waitForEvent("connected")
        #expect(stream.connection.snapshot.headers["access-control-allow-origin"] == "https://app.example")

        let stranger = try await TestHTTP.request(port: hub.port, "GET", "/api/health", headers: ["Origin": "https://evil.example"])
        #expect(stranger.headers["access-control-allow-origin"] == nil)
    }
}
