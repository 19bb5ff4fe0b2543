import Foundation
import Shared
import Testing

/// `--auth-cookie`: a stream, a subscribe and an unsubscribe may carry their token in a cookie, so that no token is
/// ever in a URL; credentialed CORS for the origins listed by name; a cookie alone from another site's page refused.
@Suite(.serialized) struct CookieTokenTests {
    static let app = "http://app.test:3000"

    static func start() async throws -> HubProcess {
        try await HubProcess.start(workers: 2, arguments: ["--auth-cookie", "sse_token", "--cors-origin", app])
    }

    @Test func aCookieCarriesTheTokenOfAStreamAndOfASubscribe() async throws {
        let hub = try await Self.start()
        defer { Task { try await hub.stop() } }
        let token = try await hub.token("alice")
        let stream = try await SSETestStream.open(
            port: hub.port, target: "/api/sse/stream", headers: ["Cookie": "theme=dark; sse_token=\(token); lang=en", "Origin": Self.app])
        defer { Task { await stream.close() } }
        let connected = try await stream.waitForEvent("connected")
        #expect(connected.first?.data.contains(#""userId":"alice""#) == true)
        let head = stream.connection.snapshot.headers
        #expect(head["access-control-allow-origin"] == Self.app)
        #expect(head["access-control-allow-credentials"] == "true")

        let subscribed = try await TestHTTP.request(
            port: hub.port, "POST", "/api/sse/subscribe",
            headers: ["Cookie": "sse_token=\"\(token)\"", "Origin": Self.app, "Content-Type": "application/json"], body: #"{"topics":["news"]}"#)
        #expect(subscribed.status == 200, "\(subscribed.text)")
        #expect(subscribed.headers["access-control-allow-credentials"] == "true")
        #expect(try await hub.publish(#"{"topic":"news","event":"headline","data":{"n":1}}"#).status == 200)
        #expect(try await stream.waitForEvent("headline").first?.data == #"{"n":1}"#)

        // Without an Origin (a server, curl) the cookie is taken as any other token location.
        let unsubscribed = try await TestHTTP.request(
            port: hub.port, "POST", "/api/sse/unsubscribe", headers: ["Cookie": "sse_token=\(token)", "Content-Type": "application/json"],
            body: #"{"topics":["news"]}"#)
        #expect(unsubscribed.status == 200, "\(unsubscribed.text)")
    }

    @Test func aCookieThatDisagreesWithTheQueryOrAHeaderIsRefused() async throws {
        let hub = try await Self.start()
        defer { Task { try await hub.stop() } }
        let alice = try await hub.token("alice")
        let bob = try await hub.token("bob")
        for (target, headers) in [
            ("/api/sse/stream?token=\(bob)", ["Cookie": "sse_token=\(alice)"]),
            ("/api/sse/stream", ["Cookie": "sse_token=\(alice)", "Authorization": "Bearer \(bob)"]),
            ("/api/sse/stream", ["Cookie": "sse_token=\(alice)", "x-auth-token": bob]),
        ] {
            let refused = try await TestHTTP.request(port: hub.port, "GET", target, headers: headers)
            #expect(refused.status == 400, "\(headers)")
            #expect(refused.message?.contains("differs") == true, "\(refused.text)")
        }
        let subscribe = try await TestHTTP.request(
            port: hub.port, "POST", "/api/sse/subscribe?token=\(bob)", headers: ["Cookie": "sse_token=\(alice)", "Content-Type": "application/json"],
            body: #"{"topics":["news"]}"#)
        #expect(subscribe.status == 400)
        // The same token in both is no conflict.
        let stream = try await SSETestStream.open(port: hub.port, target: "/api/sse/stream?token=\(alice)", headers: ["Cookie": "sse_token=\(alice)"])
        defer { Task { await stream.close() } }
        try await stream.waitForEvent("connected")
    }

    @Test func aCookieAloneFromAnOriginNotListedIsRefusedAndStarNeverAllowsCredentials() async throws {
        let hub = try await HubProcess.start(workers: 1, arguments: ["--auth-cookie", "sse_token", "--cors-origin", Self.app, "--cors-origin", "*"])
        defer { Task { try await hub.stop() } }
        let token = try await hub.token("alice")
        let refused = try await TestHTTP.request(
            port: hub.port, "POST", "/api/sse/subscribe",
            headers: ["Cookie": "sse_token=\(token)", "Origin": "http://evil.test", "Content-Type": "text/plain"], body: #"{"topics":["x"]}"#)
        #expect(refused.status == 403, "\(refused.text)")
        #expect(refused.headers["access-control-allow-credentials"] == nil)
        // A page of the hub's own host needs no listing.
        let own = try await TestHTTP.request(
            port: hub.port, "POST", "/api/sse/subscribe",
            headers: ["Cookie": "sse_token=\(token)", "Origin": "http://127.0.0.1", "Content-Type": "application/json"], body: #"{"topics":["x"]}"#)
        #expect(own.status == 200, "\(own.text)")
        // A token in a header from any origin is the seed's contract, cookie or not: `*` answers it without credentials.
        let header = try await TestHTTP.request(
            port: hub.port, "POST", "/api/sse/subscribe",
            headers: ["Authorization": "Bearer \(token)", "Origin": "http://other.test", "Content-Type": "application/json"], body: #"{"topics":["x"]}"#)
        #expect(header.status == 200)
        #expect(header.headers["access-control-allow-origin"] == "*")
        #expect(header.headers["access-control-allow-credentials"] == nil)
        let preflight = try await TestHTTP.request(
            port: hub.port, "OPTIONS", "/api/sse/subscribe",
            headers: ["Origin": Self.app, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"])
        #expect(preflight.status == 204)
        #expect(preflight.headers["access-control-allow-origin"] == Self.app)
        #expect(preflight.headers["access-control-allow-credentials"] == "true")
    }

    @Test func withoutAuthCookieACookieIsNoToken() async throws {
        let hub = try await HubProcess.start(workers: 1)
        defer { Task { try await hub.stop() } }
        let token = try await hub.token("alice")
        let response = try await TestHTTP.request(port: hub.port, "GET", "/api/sse/stream", headers: ["Cookie": "sse_token=\(token)"])
        #expect(response.status == 401)
        #expect(response.message == "No token, authorization denied")
    }

    /// A real browser: a page on one origin opens a credentialed `EventSource` to the hub on another, with the token in
    /// an HttpOnly cookie its own backend set; it gets `connected`, subscribes with a credentialed `fetch`, and
    /// receives what is published; a page on an origin not listed is refused by the browser.
    @Test func headlessChromiumStreamsAndSubscribesWithACookie() async throws {
        let appPort = try HubProcess.freePort()
        let otherPort = try HubProcess.freePort()
        let hub = try await HubProcess.start(
            workers: 2, arguments: ["--auth-cookie", "sse_token", "--cors-origin", "http://127.0.0.1:\(appPort)"])
        defer { Task { try await hub.stop() } }
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Clients/browser_check.py")
        let browser = try LineProcess([
            "python3", script.path, "--hub", "http://127.0.0.1:\(hub.port)", "--mode", "cookie", "--token", try await hub.token("chromium-user"),
            "--cookie-name", "sse_token", "--topic", "news", "--event-type", "headline", "--app-port", String(appPort),
            "--other-port", String(otherPort), "--no-wait", "--timeout", "60",
        ])
        defer { Task { try await browser.stop() } }
        let connected = try await browser.waitForJSON("the page's connected event", timeout: .seconds(60)) { $0["step"] == "connected" || $0["step"] == "error" }
        #expect(connected["step"] == "connected", "\(browser.output)")
        #expect(connected["data"] == .object(["message": "Connected to SSE stream", "userId": "chromium-user"]))
        let subscribed = try await browser.waitForJSON("the page's subscribe") { $0["step"] == "subscribed" || $0["step"] == "error" }
        #expect(subscribed["status"] == .integer(200), "\(browser.output)")
        #expect(try await hub.publish(#"{"topic":"news","event":"headline","data":{"title":"from the test"}}"#).status == 200)
        let event = try await browser.waitForJSON("the published event in the page") { $0["step"] == "event" || $0["step"] == "error" }
        #expect(event["data"] == .object(["title": "from the test"]), "\(browser.output)")
        let other = try await browser.waitForJSON("the other origin's page", timeout: .seconds(60)) { $0["origin"] == "other" }
        #expect(other["step"] == "refused", "\(browser.output)")
        try await browser.waitForJSON("the harness to finish") { $0["step"] == "done" }
    }
}
