import FuzzChecks
import NIOHTTP1
import Shared
@testable import SupervisorCore
import Testing

// The head reader on the four kinds of input a client can send: malformed, partial, oversized, pipelined. The cases
// complement `RequestHeadPeekTests` (which holds the first list of refusals and the routes); each head is also held
// to the fuzz target's differential check against SwiftNIO.

/// The decision for a head, checked against SwiftNIO first.
private func decision(_ text: String) -> RoutingDecision {
    let bytes = Array(text.utf8)
    let finding = bytes.withUnsafeBytes { FuzzTarget.requestHead.check($0) }
    #expect(finding == nil, "\(text.debugDescription): \(finding.map(String.init(describing:)) ?? "")")
    return RoutingDecision(head: bytes)
}

private func refusal(_ status: Int, _ message: String, origin: String? = nil) -> RoutingDecision {
    .refuse(APIError(status: status, message), origin: origin)
}

@Suite("Malformed heads are refused with the status and reason of their fault")
struct MalformedHeadTests {
    @Test(arguments: [
        // Request line: no method, a tab for a space, no target, a version not in HTTP/d.d form.
        (" /api/health HTTP/1.1\r\nHost: x\r\n\r\n", HeadRefusal.Reason.malformedRequestLine),
        ("GET\t/api/health HTTP/1.1\r\nHost: x\r\n\r\n", .malformedRequestLine),
        ("GET HTTP/1.1\r\nHost: x\r\n\r\n", .malformedRequestLine),
        ("GET /\r\nHost: x\r\n\r\n", .malformedRequestLine),
        ("GET / HTTP/1.10\r\nHost: x\r\n\r\n", .malformedRequestLine),
        ("GET / HTTP/1.x\r\nHost: x\r\n\r\n", .malformedRequestLine),
        ("GET / HTTPS/1.1\r\nHost: x\r\n\r\n", .malformedRequestLine),
        ("G(T / HTTP/1.1\r\nHost: x\r\n\r\n", .malformedRequestLine),
        // Versions: a minor past 1, a major other than 1.
        ("GET /api/health HTTP/1.2\r\nHost: x\r\n\r\n", .unsupportedVersion),
        ("GET /api/health HTTP/3.0\r\nHost: x\r\n\r\n", .unsupportedVersion),
        // Targets: a space, a CR, a non-ASCII byte, a percent at the end; absolute-form with a bad authority or scheme.
        ("GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", .invalidTarget),
        ("GET /api/health\r HTTP/1.1\r\nHost: x\r\n\r\n", .invalidTarget),
        ("GET /caf\u{E9} HTTP/1.1\r\nHost: x\r\n\r\n", .invalidTarget),
        ("GET /api/health% HTTP/1.1\r\nHost: x\r\n\r\n", .invalidTarget),
        ("GET http://h%zz/api/health HTTP/1.1\r\nHost: x\r\n\r\n", .invalidTarget),
        ("GET http://h h/api/health HTTP/1.1\r\nHost: x\r\n\r\n", .invalidTarget),
        ("GET http:/h/api/health HTTP/1.1\r\nHost: x\r\n\r\n", .invalidTarget),
        ("GET httpx://h/api/health HTTP/1.1\r\nHost: x\r\n\r\n", .invalidTarget),
        ("GET //h/api/health#f HTTP/1.1\r\nHost: x\r\n\r\n", .invalidTarget),
        ("GET ** HTTP/1.1\r\nHost: x\r\n\r\n", .invalidTarget),
        // Header names: a non-token byte, a non-ASCII byte, a CR.
        ("GET /api/health HTTP/1.1\r\nHost: x\r\nX(A): v\r\n\r\n", .invalidFieldName),
        ("GET /api/health HTTP/1.1\r\nHost: x\r\nX\u{E9}: v\r\n\r\n", .invalidFieldName),
        ("GET /api/health HTTP/1.1\r\nHost: x\r\nX\rA: v\r\n\r\n", .invalidFieldName),
        // Header values: ESC, and a CR before the CRLF.
        ("GET /api/health HTTP/1.1\r\nHost: x\r\nX-A: \u{1B}[31m\r\n\r\n", .invalidFieldValue),
        ("GET /api/health HTTP/1.1\r\nHost: x\r\nX-A: v\r\r\n\r\n", .invalidFieldValue),
        // Bare LF ending a header line in the middle of the head, and ending the request line of an otherwise CRLF head.
        ("GET /api/health HTTP/1.1\r\nHost: x\nX-A: v\r\n\r\n", .bareLineFeed),
        ("GET /api/health HTTP/1.1\nHost: x\r\n\r\n", .bareLineFeed),
        // obs-fold with a tab.
        ("GET /api/sse/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer\r\n\tt\r\n\r\n", .obsoleteLineFolding),
        // Host: userinfo, a path, two of them in HTTP/1.0 too.
        ("GET /api/health HTTP/1.1\r\nHost: u@h\r\n\r\n", .hostHeader),
        ("GET /api/health HTTP/1.1\r\nHost: h/x\r\n\r\n", .hostHeader),
        ("GET /api/health HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n", .hostHeader),
        // Content-Length: conflicting values, a sign, hex, a space inside, a name in another case repeated.
        ("POST /api/sse/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", .invalidContentLength),
        ("POST /api/sse/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\n", .invalidContentLength),
        ("POST /api/sse/publish HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\n", .invalidContentLength),
        ("POST /api/sse/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 0x10\r\n\r\n", .invalidContentLength),
        ("POST /api/sse/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 1 2\r\n\r\n", .invalidContentLength),
        // Transfer-Encoding: another coding, chunked with a parameter, a list ending in chunked, an empty value, in
        // HTTP/1.0, and after a Content-Length in either order.
        ("POST /api/sse/subscribe HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n", .unsupportedTransferEncoding),
        ("POST /api/sse/subscribe HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked;q=1\r\n\r\n", .unsupportedTransferEncoding),
        ("POST /api/sse/subscribe HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", .unsupportedTransferEncoding),
        ("POST /api/sse/subscribe HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n\r\n", .unsupportedTransferEncoding),
        ("POST /api/sse/subscribe HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\ntransfer-encoding: gzip\r\n\r\n", .unsupportedTransferEncoding),
        ("POST /api/sse/subscribe HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", .conflictingFraming),
        ("POST /api/sse/subscribe HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", .conflictingFraming),
    ])
    func refuses(_ text: String, _ reason: HeadRefusal.Reason) {
        #expect(RequestHeadPeekTests.parse(text) == .failure(HeadRefusal(reason)), "\(text.debugDescription)")
        #expect(decision(text) == .refuse(HeadRefusal(reason).error, origin: nil))
    }

    /// Each reason's answer: its status, and a message; 413, 501 and 505 only for what they mean.
    @Test func everyReasonHasItsStatus() {
        let statuses: [HeadRefusal.Reason: Int] = [
            .unsupportedVersion: 505, .contentLengthTooLarge: 413, .unsupportedTransferEncoding: 501,
        ]
        for reason in HeadRefusal.Reason.allCases {
            let error = HeadRefusal(reason).error
            #expect(error.status == statuses[reason] ?? 400, "\(reason)")
            #expect(!error.message.isEmpty && error.allow == nil, "\(reason)")
        }
        #expect(HeadRefusal(.contentLengthTooLarge).error == .bodyTooLarge)
    }

    /// A refusal from the reader is answered without the request's Origin: nothing of a malformed head is trusted.
    @Test func aMalformedHeadsOriginIsNotRead() {
        #expect(
            decision("POST /api/sse/subscribe HTTP/1.1\r\nHost: x\r\nOrigin: o\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
                == .refuse(HeadRefusal(.invalidContentLength).error, origin: nil))
    }

    /// Routes: 404 for any path not exactly a route's, 405 (with Allow) for a known path's other methods, 505 for a
    /// stream over HTTP/1.0; the refusals after a well-formed head carry its Origin.
    @Test func refusesUnknownRoutesAndMethods() {
        for target in ["/", "/api", "/api/health/", "/API/HEALTH", "//api/health", "/api/sse/stream%2F", "/api/sse", "http://h", "http://h?/api/health"] {
            #expect(decision("GET \(target) HTTP/1.1\r\nHost: x\r\nOrigin: o\r\n\r\n") == .refuse(.notFound, origin: "o"), "\(target)")
        }
        #expect(decision("OPTIONS /nowhere HTTP/1.1\r\nHost: x\r\n\r\n") == .refuse(.notFound, origin: nil))
        #expect(decision("POST /x?u=http://a/api/health HTTP/1.1\r\nHost: x\r\n\r\n") == .refuse(.notFound, origin: nil))
        let wrongMethods: [(String, APIRoute)] = [
            ("HEAD", .stream), ("POST", .stream), ("GET", .subscribe), ("PUT", .unsubscribe), ("GET", .publish),
            ("POST", .stats), ("POST", .health), ("PATCH", .health), ("get", .health), ("PRI", .stream),
        ]
        for (method, route) in wrongMethods {
            let answer = decision("\(method) \(route.rawValue) HTTP/1.1\r\nHost: x\r\nOrigin: o\r\n\r\n")
            #expect(answer == .refuse(.methodNotAllowed(route), origin: "o"), "\(method) \(route)")
            #expect(APIError.methodNotAllowed(route).status == 405 && APIError.methodNotAllowed(route).allow == route.method.rawValue)
        }
        #expect(
            decision("GET http://h/api/sse/stream?token=t HTTP/1.0\r\nOrigin: o\r\n\r\n")
                == refusal(505, "An event stream needs HTTP/1.1", origin: "o"))
    }

    /// What is handed on, and what it carries: the token from the query first, then `Bearer`, then `x-auth-token`;
    /// a route without one is still handed on (the token check refuses it next).
    @Test func handsOnWhatTheRoutesServe() {
        #expect(
            decision("POST /api/sse/unsubscribe HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer b\r\nx-auth-token: x\r\n\r\n")
                == .handOff(.init(route: .unsubscribe, token: "b")))
        #expect(
            decision("POST /api/sse/subscribe?token=q HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer b\r\n\r\n")
                == .handOff(.init(route: .subscribe, token: "q")))
        #expect(
            decision("POST /api/sse/subscribe HTTP/1.1\r\nHost: x\r\nAuthorization: Basic b\r\nX-Auth-Token: x\r\n\r\n")
                == .handOff(.init(route: .subscribe, token: "x")))
        #expect(decision("GET /api/sse/stream HTTP/1.1\r\nHost: x\r\n\r\n") == .handOff(.init(route: .stream, token: nil)))
        // Last-Event-ID: the header wins over the query.
        #expect(
            decision("GET /api/sse/stream?token=t&lastEventId=1-1 HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 2-2\r\n\r\n")
                == .handOff(.init(route: .stream, token: "t", lastEventID: "2-2")))
        for route in [APIRoute.publish, .stats, .health] {
            #expect(decision("\(route.method.rawValue) \(route.rawValue) HTTP/1.1\r\nHost: x\r\n\r\n") == .serveLocally, "\(route)")
        }
    }
}

@Suite("A partial head is waited for: never a decision")
struct PartialHeadTests {
    static let heads = [
        "GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /api/sse/stream?token=abc&lastEventId=1-1 HTTP/1.1\r\nHost: hub.example:8080\r\nAuthorization: Bearer t\r\n"
            + "Last-Event-ID: 2-2\r\nOrigin: https://a.example\r\nAccept: text/event-stream\r\n\r\n",
        "POST /api/sse/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n",
        "GET http://[::1]:8080/api/sse/stream?token=t HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
        "GET /api/health HTTP/1.0\r\n\r\n",
    ]

    /// Every prefix, each byte's arrival as a peek sees it: incomplete, and refused as unterminated by a caller that
    /// parsed it anyway (whichever byte it ends on, a CR, an LF, mid-token); the whole head is decided.
    @Test(arguments: heads)
    func everyPrefixIsIncomplete(_ head: String) {
        let bytes = Array(head.utf8)
        for end in 0..<bytes.count {
            let prefix = Array(bytes[..<end])
            #expect(PeekedHead(prefix, maximumHeadBytes: 8192) == .incomplete, "\(end) bytes")
            #expect(throws: HeadRefusal(.unterminated), "\(end) bytes") { try RequestHeadPeek.parse(prefix) }
            let finding = prefix.withUnsafeBytes { FuzzTarget.requestHead.check($0) }
            #expect(finding == nil, "\(end) bytes: \(finding.map(String.init(describing:)) ?? "")")
        }
        #expect(PeekedHead(bytes, maximumHeadBytes: 8192) == .complete(length: bytes.count))
        #expect(throws: Never.self) { try RequestHeadPeek.parse(bytes) }
    }

    /// Ends that only look like an end: a CR alone, CR CR LF, an LF that ends a line but not the head.
    @Test func nearEndsAreNotEnds() {
        for text in [
            "GET / HTTP/1.1\r\nHost: x\r\n\r", "GET / HTTP/1.1\r\nHost: x\r\r", "GET / HTTP/1.1\r\nHost: x\r\n\r\r",
            "GET / HTTP/1.1\r\nHost: x\r\nX: \r\n", "GET / HTTP/1.1\r", "\r",
        ] {
            #expect(PeekedHead(Array(text.utf8), maximumHeadBytes: 8192) == .incomplete, "\(text.debugDescription)")
        }
    }
}

@Suite("A head is taken up to the limit, and refused past it")
struct OversizedHeadTests {
    static let limit = 512

    /// A valid head of exactly `length` bytes (a filler header pads it).
    static func head(length: Int) -> [UInt8] {
        let start = Array("GET /api/health HTTP/1.1\r\nHost: x\r\nX-Pad: ".utf8)
        let end = Array("\r\n\r\n".utf8)
        return start + Array(repeating: UInt8(ascii: "p"), count: length - start.count - end.count) + end
    }

    @Test func atTheLimitIsTaken() throws {
        let head = Self.head(length: Self.limit)
        #expect(PeekedHead(head, maximumHeadBytes: Self.limit) == .complete(length: Self.limit))
        #expect(RoutingDecision(head: head) == .serveLocally)
        // The accept thread peeks one byte more than the limit: a pipelined byte does not make the head too large.
        #expect(PeekedHead(head + [UInt8(ascii: "G")], maximumHeadBytes: Self.limit) == .complete(length: Self.limit))
    }

    @Test func pastTheLimitIsRefused() {
        let head = Self.head(length: Self.limit + 1)
        // All of it, or only the limit and one byte (what the peek holds): refused, not waited for.
        #expect(PeekedHead(head, maximumHeadBytes: Self.limit) == .tooLarge)
        #expect(PeekedHead(Array(head.prefix(Self.limit + 1)), maximumHeadBytes: Self.limit) == .tooLarge)
        // Its end two bytes short of arrival: still refused once past the limit, waited for up to it.
        #expect(PeekedHead(Array(head.dropLast(2)), maximumHeadBytes: Self.limit) == .incomplete)
        #expect(PeekedHead(Array(head.prefix(Self.limit - 1)), maximumHeadBytes: Self.limit) == .incomplete)
        let endless = Array(repeating: UInt8(ascii: "G"), count: 10 * Self.limit)
        #expect(PeekedHead(Array(endless.prefix(Self.limit)), maximumHeadBytes: Self.limit) == .incomplete)
        #expect(PeekedHead(endless, maximumHeadBytes: Self.limit) == .tooLarge)
    }

    /// A declared body over 64 KiB is refused from the head (413), within the 18 digits the reader takes.
    @Test func aContentLengthPastTheReadersBoundIsTooLarge() {
        let publish = "POST /api/sse/publish HTTP/1.1\r\nHost: x\r\nContent-Length: "
        #expect(decision(publish + String(repeating: "9", count: 18) + "\r\n\r\n") == .serveLocally)
        #expect(decision(publish + "1" + String(repeating: "0", count: 18) + "\r\n\r\n") == .refuse(.bodyTooLarge, origin: nil))
        #expect(decision(publish + String(repeating: "9", count: 40) + "\r\n\r\n") == .refuse(.bodyTooLarge, origin: nil))
    }
}

@Suite("Pipelined requests: the first head alone is measured and decided")
struct PipelinedHeadTests {
    static func firstHead(_ text: String) -> (length: Int, decision: RoutingDecision)? {
        let bytes = Array(text.utf8)
        guard case .complete(let length) = PeekedHead(bytes, maximumHeadBytes: 8192) else { return nil }
        let finding = bytes.withUnsafeBytes { FuzzTarget.requestHead.check($0) }
        #expect(finding == nil, "\(finding.map(String.init(describing:)) ?? "")")
        let decision = RoutingDecision(head: Array(bytes[..<length]))
        // Parsing the whole buffer reads no further than the first head either.
        #expect(RoutingDecision(head: bytes) == decision)
        return (length, decision)
    }

    @Test func theSecondRequestDoesNotCount() throws {
        let stream = "GET /api/sse/stream HTTP/1.1\r\nHost: x\r\n\r\n"
        // The second request's token, Last-Event-ID and Origin are not the first's.
        let second = "GET /api/sse/stream?token=evil HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer evil\r\nLast-Event-ID: 9\r\nOrigin: o\r\n\r\n"
        let (length, decision) = try #require(Self.firstHead(stream + second))
        #expect(length == stream.utf8.count)
        #expect(decision == .handOff(.init(route: .stream, token: nil)))
    }

    @Test func theDecisionIsTheFirsts() throws {
        let health = "GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n"
        // A malformed second request does not spoil a good first one...
        let spoiled = try #require(Self.firstHead(health + "GET /a b HTTP/1.1\nContent-Length: -1\r\n\r\n"))
        #expect(spoiled.length == health.utf8.count && spoiled.decision == .serveLocally)
        // ... nor a good second one redeem a bad first one.
        let bad = "GET /api/health HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n"
        let refused = try #require(Self.firstHead(bad + health))
        #expect(refused.length == bad.utf8.count && refused.decision == .refuse(HeadRefusal(.hostHeader).error, origin: nil))
        // A bare-LF first head ends at its own empty line and is refused, whatever follows.
        let bareLF = "GET /api/health HTTP/1.1\nHost: x\n\n"
        let refusedLF = try #require(Self.firstHead(bareLF + health))
        #expect(refusedLF.length == bareLF.utf8.count && refusedLF.decision == .refuse(HeadRefusal(.bareLineFeed).error, origin: nil))
    }

    /// A body, then the next request: the head ends before the body, however the body looks (an empty line in it).
    @Test func aBodyAndTheNextRequestAreNotTheHead() throws {
        let publish = "POST /api/sse/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n"
        let (length, decision) = try #require(Self.firstHead(publish + "\r\n\r\n{}" + "GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n"))
        #expect(length == publish.utf8.count && decision == .serveLocally)
        // A stream head followed by an empty line (which a client may send between requests) ends where it ends.
        let stream = "GET /api/sse/stream?token=t HTTP/1.1\r\nHost: x\r\n\r\n"
        let next = try #require(Self.firstHead(stream + "\r\n" + stream))
        #expect(next.length == stream.utf8.count && next.decision == .handOff(.init(route: .stream, token: "t")))
    }

    /// However large the second request, the first head within the limit is taken.
    @Test func aLargeSecondRequestDoesNotMakeTheFirstTooLarge() {
        let health = Array("GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        let second = OversizedHeadTests.head(length: 4 * OversizedHeadTests.limit)
        #expect(PeekedHead(health + second, maximumHeadBytes: OversizedHeadTests.limit) == .complete(length: health.count))
    }
}
