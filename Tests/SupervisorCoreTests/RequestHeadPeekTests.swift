import FuzzChecks
import NIOHTTP1
import Shared
@testable import SupervisorCore
import Testing

@Suite("The supervisor's head reader accepts what RFC 9112 and SwiftNIO both accept, and refuses the rest")
struct RequestHeadPeekTests {
    static func head(_ text: String) -> [UInt8] { Array(text.utf8) }

    /// Parses a head, and holds the same bytes to the fuzz target's differential check against SwiftNIO.
    static func parse(_ bytes: [UInt8]) -> Result<RequestHeadPeek, HeadRefusal> {
        let finding = bytes.withUnsafeBytes { FuzzTarget.requestHead.check($0) }
        #expect(finding == nil, "\(finding.map(String.init(describing:)) ?? "")")
        do { return .success(try RequestHeadPeek.parse(bytes)) } catch { return .failure(error) }
    }

    static func parse(_ text: String) -> Result<RequestHeadPeek, HeadRefusal> { parse(head(text)) }

    @Test func readsAStreamHead() throws {
        let peek = try Self.parse(
            "GET /api/sse/stream?token=abc HTTP/1.1\r\nHost: x\r\nAUTHORIZATION:  Bearer t1 \t\r\nauthorization: Bearer t2\r\n"
                + "x-auth-token:t3\r\nLast-Event-ID: 1-2\r\nOrigin: https://a.example\r\nCookie: a=1; sse_token=t4\r\n"
                + "cookie: b=2\r\n\r\n"
        ).get()
        #expect(peek == RequestHeadPeek(
            method: .GET, version: .http1_1, target: "/api/sse/stream?token=abc", authorization: "Bearer t1", xAuthToken: "t3",
            lastEventID: "1-2", origin: "https://a.example", cookie: "a=1; sse_token=t4", host: "x"))
    }

    @Test func aCookieTokenIsReadByNameAndAConflictOrAForeignOriginIsRefused() throws {
        let auth = CookieAuth(name: "sse_token", cors: CORSPolicy(allowedOrigins: ["https://app.example"], allowsCredentials: true))
        func decide(_ headers: String, target: String = "/api/sse/stream") -> RoutingDecision {
            RoutingDecision(head: Self.head("GET \(target) HTTP/1.1\r\nHost: hub.example\r\n" + headers + "\r\n"), cookieAuth: auth)
        }
        func token(_ decision: RoutingDecision) -> String? {
            if case .handOff(let request) = decision { return request.token }
            return nil
        }
        #expect(token(decide("Cookie: sse_token=\"t1\"; x=2\r\n")) == "t1")
        #expect(token(decide("Cookie: other_sse_token=t0; sse_token=t1\r\n")) == "t1")
        #expect(token(decide("Cookie: sse_token=t1\r\nOrigin: https://app.example\r\n")) == "t1")
        #expect(token(decide("Cookie: sse_token=t1\r\nOrigin: https://hub.example\r\n")) == "t1")
        #expect(token(decide("Cookie: sse_token=t1\r\n", target: "/api/sse/stream?token=t1")) == "t1")
        #expect(token(decide("Cookie: sse_token=\r\nAuthorization: Bearer t2\r\n")) == "t2")
        #expect(decide("Cookie: sse_token=t1\r\nAuthorization: Bearer t2\r\n") == .refuse(.conflictingTokens, origin: nil))
        #expect(
            decide("Cookie: sse_token=t1\r\nOrigin: https://evil.example\r\n")
                == .refuse(.cookieFromOtherOrigin, origin: "https://evil.example"))
        // Without --auth-cookie a cookie is not read at all.
        #expect(token(RoutingDecision(head: Self.head("GET /api/sse/stream HTTP/1.1\r\nHost: h\r\nCookie: sse_token=t1\r\n\r\n"))) == nil)
    }

    @Test(arguments: [
        // NUL and other controls in a value, controls in a name, whitespace before the colon, no colon, empty name.
        ("GET /api/health HTTP/1.1\r\nHost: x\r\nX-A: a\u{0}b\r\n\r\n", HeadRefusal.Reason.invalidFieldValue),
        ("GET /api/health HTTP/1.1\r\nHost: x\r\nX-A: a\u{7F}\r\n\r\n", .invalidFieldValue),
        ("GET /api/health HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", .invalidFieldValue),
        ("GET /api/health HTTP/1.1\r\nHost: x\r\nX\u{1}A: b\r\n\r\n", .invalidFieldName),
        ("GET /api/sse/stream HTTP/1.1\r\nHost: x\r\nAuthorization : Bearer t\r\n\r\n", .whitespaceBeforeColon),
        ("GET /api/sse/stream HTTP/1.1\r\nHost: x\r\nAuthorization\t: Bearer t\r\n\r\n", .whitespaceBeforeColon),
        ("GET /api/health HTTP/1.1\r\nHost: x\r\nnocolon\r\n\r\n", .invalidFieldName),
        ("GET /api/health HTTP/1.1\r\nHost: x\r\n: empty\r\n\r\n", .invalidFieldName),
        // obs-fold, and whitespace before the first field.
        ("GET /api/sse/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer\r\n t\r\n\r\n", .obsoleteLineFolding),
        ("GET /api/sse/stream HTTP/1.1\r\n Host: x\r\n\r\n", .obsoleteLineFolding),
        // Bare LF, anywhere; an empty line before the request line.
        ("GET /api/health HTTP/1.1\nHost: x\n\n", .bareLineFeed),
        ("GET /api/health HTTP/1.1\r\nHost: x\n\r\n", .bareLineFeed),
        ("GET /api/health HTTP/1.1\r\nHost: x\r\n\n", .bareLineFeed),
        ("\r\nGET /api/health HTTP/1.1\r\nHost: x\r\n\r\n", .malformedRequestLine),
        // Request lines.
        ("GET  /api/health HTTP/1.1\r\nHost: x\r\n\r\n", .invalidTarget),
        ("GET /api/health  HTTP/1.1\r\nHost: x\r\n\r\n", .invalidTarget),
        ("GET /api/health HTTP/1.1 \r\nHost: x\r\n\r\n", .malformedRequestLine),
        ("GET /api/health http/1.1\r\nHost: x\r\n\r\n", .malformedRequestLine),
        ("G\u{0}T /api/health HTTP/1.1\r\nHost: x\r\n\r\n", .malformedRequestLine),
        ("GET\r\nHost: x\r\n\r\n", .malformedRequestLine),
        ("GET /api/health HTTP/2.0\r\nHost: x\r\n\r\n", .unsupportedVersion),
        ("GET /api/health HTTP/0.9\r\nHost: x\r\n\r\n", .unsupportedVersion),
        ("GET /api/health#top HTTP/1.1\r\nHost: x\r\n\r\n", .invalidTarget),
        ("GET /api/h%zzealth HTTP/1.1\r\nHost: x\r\n\r\n", .invalidTarget),
        ("GET /api/\u{7F} HTTP/1.1\r\nHost: x\r\n\r\n", .invalidTarget),
        ("GET api/health HTTP/1.1\r\nHost: x\r\n\r\n", .invalidTarget),
        ("GET ftp://h/api/health HTTP/1.1\r\nHost: x\r\n\r\n", .invalidTarget),
        ("GET http://user@h/api/health HTTP/1.1\r\nHost: x\r\n\r\n", .invalidTarget),
        ("GET http:///api/health HTTP/1.1\r\nHost: x\r\n\r\n", .invalidTarget),
        ("CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", .invalidTarget),
        // Host (RFC 9112 §3.2) and framing (§6).
        ("GET /api/health HTTP/1.1\r\n\r\n", .hostHeader),
        ("GET /api/health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", .hostHeader),
        ("GET /api/health HTTP/1.1\r\nHost: a b\r\n\r\n", .hostHeader),
        ("POST /api/sse/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", .invalidContentLength),
        ("POST /api/sse/publish HTTP/1.1\r\nHost: x\r\nContent-Length: -3\r\n\r\n", .invalidContentLength),
        ("POST /api/sse/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\n", .invalidContentLength),
        ("POST /api/sse/publish HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n", .invalidContentLength),
        // Found by the request-head fuzzer: llhttp allows only spaces after these two values, so a tab is refused.
        ("POST /api/sse/publish HTTP/1.1\r\nHost: x\r\nContent-Length:\t5\t\r\n\r\n", .invalidContentLength),
        ("POST /api/sse/subscribe HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\t\r\n\r\n", .unsupportedTransferEncoding),
        ("POST /api/sse/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 1234567890123456789\r\n\r\n", .contentLengthTooLarge),
        ("POST /api/sse/subscribe HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", .conflictingFraming),
        ("POST /api/sse/subscribe HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", .conflictingFraming),
        ("POST /api/sse/subscribe HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", .unsupportedTransferEncoding),
        ("POST /api/sse/subscribe HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", .unsupportedTransferEncoding),
        // Not ended by an empty line (parse is given a whole head; this is what a caller passing less gets).
        ("GET /api/health HTTP/1.1\r\nHost: x\r\n", .unterminated),
    ])
    func refuses(_ text: String, _ reason: HeadRefusal.Reason) {
        #expect(Self.parse(text) == .failure(HeadRefusal(reason)), "\(text.debugDescription)")
        let status = HeadRefusal(reason).error.status
        #expect(RoutingDecision(head: Self.head(text)) == .refuse(HeadRefusal(reason).error, origin: nil))
        #expect([400, 413, 501, 505].contains(status))
    }

    @Test func acceptsWhatTheRFCAndSwiftNIOAccept() throws {
        // obs-text in a value, empty values, HTTP/1.0 without Host, absolute-form, `*`, tchar names, percent-encoding.
        let accepted = [
            "GET /api/sse/stream HTTP/1.1\r\nHost: x\r\nLast-Event-ID: \u{E9}\r\nX-Empty:\r\n\r\n",
            "GET /api/health HTTP/1.0\r\n\r\n",
            "GET HTTP://127.0.0.1:8080/api/health?x=%2F HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
            "GET https://[::1]:8080/api/sse/stream?token=t HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /api/health HTTP/1.1\r\nHost: x\r\n!#$%&'*+-.^_`|~09azAZ: v\r\nHost-Like: \t\r\n\r\n",
            "POST /api/sse/subscribe HTTP/1.1\r\nHost: x\r\nContent-Length: 000017\r\n\r\n",
            "POST /api/sse/subscribe HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\t Chunked  \r\n\r\n",
            "POST /api/sse/subscribe HTTP/1.1\r\nHost: x\r\nContent-Length:\t 5  \r\n\r\n",
            "GET /api/health HTTP/1.1\r\nHost:\r\n\r\n",
            "GET /api/health?a-._~!$&'()*+,;=:@/?%20%aF HTTP/1.1\r\nHost: h-._~!$&'()*+,;=:[]%41\r\n\r\n",
        ]
        for text in accepted {
            #expect(throws: Never.self, "\(text.debugDescription)") { try Self.parse(text).get() }
        }
    }

    @Test func findsTheEndOfAHead() {
        func length(_ bytes: some Collection<UInt8>) -> Int? { Array(bytes).withUnsafeBytes { RequestHeadPeek.headLength(in: $0) } }
        func length(_ text: String) -> Int? { length(text.utf8) }
        let head = "GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n"
        #expect(length(head) == head.utf8.count)
        // Partial heads: wait for more, whatever byte they end on.
        for end in 0..<head.utf8.count { #expect(length(head.utf8.prefix(end)) == nil, "\(end) bytes") }
        // Pipelined requests and a body: the first head only.
        #expect(length(head + "GET /api/sse/stream HTTP/1.1\r\nHost: x\r\n\r\n") == head.utf8.count)
        let publish = "POST /api/sse/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n"
        #expect(length(publish + "\r\n\r\n") == publish.utf8.count)
        // Bare LF ends are found (then refused), so the client is answered at once instead of timing out.
        #expect(length("GET / HTTP/1.1\nHost: x\n\nrest") == 24)
        #expect(length("GET / HTTP/1.1\r\nHost: x\n\r\n") == 26)
        #expect(length("\r\nGET") == 2)
        #expect(length("\nGET") == 1)
        // A bare CR is not a line end.
        #expect(length("GET / HTTP/1.1\r\nHost: x\r\n\r\r\n") == nil)
        // Long heads: found past any buffer stride, and nothing found in a long partial one.
        let long = "GET /api/health HTTP/1.1\r\nHost: x\r\nX-Long: \(String(repeating: "v", count: 9000))\r\n\r\n"
        #expect(length(long) == long.utf8.count)
        #expect(length(long.utf8.dropLast(2)) == nil)
    }

    @Test func decidesTheRoute() {
        func decision(_ text: String) -> RoutingDecision {
            let bytes = Self.head(text)
            let finding = bytes.withUnsafeBytes { FuzzTarget.requestHead.check($0) }
            #expect(finding == nil, "\(finding.map(String.init(describing:)) ?? "")")
            return RoutingDecision(head: bytes)
        }
        #expect(
            decision("GET /api/sse/stream?token=q&lastEventId=1-1 HTTP/1.1\r\nHost: x\r\nOrigin: o\r\n\r\n")
                == .handOff(.init(route: .stream, token: "q", lastEventID: "1-1", origin: "o")))
        #expect(
            decision("GET /api/sse/stream HTTP/1.1\r\nHost: x\r\nx-auth-token: t\r\nLast-Event-ID: 2-2\r\n\r\n")
                == .handOff(.init(route: .stream, token: "t", lastEventID: "2-2", origin: nil)))
        #expect(
            decision("GET http://h:1/api/sse/stream?token=a HTTP/1.1\r\nHost: h:1\r\n\r\n")
                == .handOff(.init(route: .stream, token: "a", lastEventID: nil, origin: nil)))
        #expect(
            decision("POST /api/sse/subscribe HTTP/1.0\r\nAuthorization: Bearer b\r\nContent-Length: 2\r\n\r\n")
                == .handOff(.init(route: .subscribe, token: "b")))
        #expect(decision("GET http://h/api/health HTTP/1.1\r\nHost: h\r\n\r\n") == .serveLocally)
        #expect(decision("OPTIONS /api/sse/stream HTTP/1.1\r\nHost: x\r\n\r\n") == .serveLocally)
        // Unknown and wrong methods on a known path are 405 with Allow; SwiftNIO's parser never sees an unknown one.
        #expect(decision("FOO /api/sse/stream HTTP/1.1\r\nHost: x\r\nOrigin: o\r\n\r\n") == .refuse(.methodNotAllowed(.stream), origin: "o"))
        #expect(decision("M-SEARCH /api/health HTTP/1.1\r\nHost: x\r\n\r\n") == .refuse(.methodNotAllowed(.health), origin: nil))
        #expect(decision("DELETE /api/sse/publish HTTP/1.1\r\nHost: x\r\n\r\n") == .refuse(.methodNotAllowed(.publish), origin: nil))
        #expect(decision("FOO /nowhere HTTP/1.1\r\nHost: x\r\n\r\n") == .refuse(.notFound, origin: nil))
        #expect(decision("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n") == .refuse(.notFound, origin: nil))
        // A stream over HTTP/1.0 cannot be chunked: 505; other routes answer HTTP/1.0 normally.
        #expect(
            decision("GET /api/sse/stream?token=q HTTP/1.0\r\n\r\n")
                == .refuse(APIError(status: 505, "An event stream needs HTTP/1.1"), origin: nil))
        #expect(decision("GET /api/health HTTP/1.0\r\n\r\n") == .serveLocally)
    }

    @Test func characterSetsAreTheRFCs() {
        let alphanumerics = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789".utf8)
        let unreserved = alphanumerics + Array("-._~".utf8)
        let subDelimiters = Array("!$&'()*+,;=".utf8)
        let expected: [(ASCIISet, [UInt8])] = [
            (.token, alphanumerics + Array("!#$%&'*+-.^_`|~".utf8)),
            (.target, unreserved + subDelimiters + Array(":@/?%".utf8)),
            (.authority, unreserved + subDelimiters + Array(":[]%".utf8)),
        ]
        for (set, members) in expected {
            for byte in UInt8.min...UInt8.max {
                #expect(set.contains(byte) == members.contains(byte), "byte \(byte)")
            }
        }
    }

    /// Every byte in each place the reader checks, and every method on every kind of path, held to the differential
    /// check against SwiftNIO: the systematic complement of the fuzzer's random search.
    @Test func everyByteInEveryPlaceAgreesWithSwiftNIO() {
        var inputs: [[UInt8]] = []
        let health = Array("GET /api/health HTTP/1.1\r\nHost: x\r\n".utf8)
        let subscribe = Array("POST /api/sse/subscribe HTTP/1.1\r\nHost: x\r\n".utf8)
        let end = Array("\r\n\r\n".utf8)
        for byte in UInt8.min...UInt8.max {
            inputs.append(health + Array("X-V: a".utf8) + [byte] + Array("b".utf8) + end)
            inputs.append(health + Array("X".utf8) + [byte] + Array("Y: v".utf8) + end)
            inputs.append(subscribe + Array("Content-Length: 5".utf8) + [byte] + end)
            inputs.append(subscribe + Array("Content-Length:".utf8) + [byte] + Array("5".utf8) + end)
            inputs.append(subscribe + Array("Transfer-Encoding: chunked".utf8) + [byte] + end)
            inputs.append(Array("GET /api/health HTTP/1.1\r\nHost: x".utf8) + [byte] + end)
            inputs.append(Array("GET /api/sse/stream?token=a".utf8) + [byte] + Array("b HTTP/1.1\r\nHost: x".utf8) + end)
            inputs.append(Array("GET http://h".utf8) + [byte] + Array("x/api/health HTTP/1.1\r\nHost: x".utf8) + end)
        }
        let methods = ["GET", "POST", "OPTIONS", "HEAD", "DELETE", "CONNECT", "PRI", "SOURCE", "QUERY", "M-SEARCH", "MSEARCH", "get"]
        let targets = ["/api/health", "/api/sse/stream?token=t", "/api/sse/subscribe", "/x", "*", "http://h/api/sse/stream?token=t"]
        for method in methods {
            for target in targets {
                inputs.append(Array("\(method) \(target) HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
                inputs.append(Array("\(method) \(target) HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".utf8))
            }
        }
        for input in inputs {
            let finding = input.withUnsafeBytes { FuzzTarget.requestHead.check($0) }
            #expect(finding == nil, "\(String(decoding: input, as: UTF8.self).debugDescription): \(finding.map(String.init(describing:)) ?? "")")
        }
    }
}
