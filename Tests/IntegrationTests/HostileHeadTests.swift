import Foundation
import Shared
import Testing

/// Issue 9: heads the supervisor reads before authentication, as a hostile client sends them. Each refusal comes
/// from the supervisor at once with the JSON error body, and the hub keeps serving everyone else.
@Suite("Hostile request heads are refused with JSON, at once, and the hub keeps serving", .serialized)
struct HostileHeadTests {
    struct Case: Sendable, CustomStringConvertible {
        var head: String
        var status: Int
        var message: String
        var description: String { head.debugDescription }
    }

    static let cases: [Case] = [
        Case(head: "GET /api/health HTTP/1.1\r\nHost: x\r\nX-A: a\u{0}b\r\n\r\n", status: 400, message: "Control character in a header value"),
        Case(head: "GET /api/health HTTP/1.1\r\nHost: x\r\nX\u{1}A: b\r\n\r\n", status: 400, message: "Malformed header line"),
        Case(head: "GET /api/sse/stream HTTP/1.1\r\nHost: x\r\nx-auth-token : t\r\n\r\n", status: 400,
             message: "Whitespace between a header name and its colon"),
        Case(head: "GET /api/health HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", status: 400, message: "Malformed header line"),
        Case(head: "GET /api/sse/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer\r\n t\r\n\r\n", status: 400,
             message: "Folded header lines are not accepted"),
        // Bare LF: answered at once, not after the head timeout (set to 60 s below).
        Case(head: "GET /api/health HTTP/1.1\nHost: x\n\n", status: 400, message: "Header lines must end in CRLF"),
        Case(head: "FOO /api/sse/stream HTTP/1.1\r\nHost: x\r\n\r\n", status: 405, message: "Method not allowed (use GET)"),
        Case(head: "FOO /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", status: 404, message: "Not found"),
        Case(head: "GET /api/sse/stream?token=t HTTP/1.0\r\n\r\n", status: 505, message: "An event stream needs HTTP/1.1"),
        Case(head: "GET /api/health HTTP/2.0\r\nHost: x\r\n\r\n", status: 505, message: "HTTP version not supported (use HTTP/1.1)"),
        Case(head: "GET /api/health HTTP/1.1\r\n\r\n", status: 400, message: "An HTTP/1.1 request needs exactly one valid Host header"),
        Case(head: "POST /api/sse/subscribe HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}",
             status: 400, message: "Conflicting Transfer-Encoding and Content-Length"),
        Case(head: "POST /api/sse/subscribe HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", status: 501,
             message: "Transfer-Encoding other than chunked not supported"),
        Case(head: "GET /api/health#x HTTP/1.1\r\nHost: x\r\n\r\n", status: 400, message: "Invalid request target"),
        Case(head: "\u{01}\u{02}hello there\r\n\r\n", status: 400, message: "Malformed request line"),
        // A head the supervisor accepts, with a body SwiftNIO's parser refuses: JSON too, not NIO's plain text.
        Case(head: "POST /api/sse/publish HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", status: 400,
             message: "Malformed request body"),
    ]

    @Test func refusalsGetTheirJSONBodyAndTheHubKeepsServing() async throws {
        let hub = try await HubProcess.start(workers: 2, arguments: ["--head-timeout", "60"])
        defer { Task { try await hub.stop() } }
        let bystander = try await hub.openStream("bystander")
        for item in Self.cases {
            let started = ContinuousClock.now
            let response = try await TestHTTP.raw(port: hub.port, Array(item.head.utf8))
            #expect(response.status == item.status, "\(item) → \(response.status) \(response.text)")
            #expect(response.json["success"] == .bool(false), "\(item)")
            #expect(response.message == item.message, "\(item)")
            #expect(response.headers["content-type"]?.hasPrefix("application/json") == true, "\(item)")
            #expect(response.headers["connection"] == "close", "\(item)")
            if item.status == 405 { #expect(response.headers["allow"] == "GET", "\(item)") }
            #expect(ContinuousClock.now - started < .seconds(5), "\(item) answered at once, not timed out")
        }

        // What the old reader sent elsewhere: absolute-form is routed like origin-form.
        let health = try await TestHTTP.raw(port: hub.port, Array("GET http://127.0.0.1/api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8))
        #expect(health.status == 200)
        let token = try await hub.token("absolute")
        let stream = try await SSETestStream.open(port: hub.port, target: "http://127.0.0.1/api/sse/stream?token=\(token)")
        try await stream.waitForEvent("connected")

        // Nobody crashed, the bystander's stream is intact.
        #expect(try await hub.health().workers.allSatisfy { $0.restarts == 0 })
        #expect(try await hub.publish(#"{"event":"still-here","data":true}"#).status == 200)
        try await bystander.waitForEvent("still-here")
        try await stream.waitForEvent("still-here")
        #expect(!bystander.isClosed)
    }
}
