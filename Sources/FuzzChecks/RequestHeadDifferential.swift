import NIOCore
import NIOEmbedded
import NIOHTTP1
import Shared
import SupervisorCore

/// Feeds the same bytes to the supervisor's head reader (`RequestHeadPeek.headLength`, `parse`, `RoutingDecision`,
/// exactly as `AcceptReactor` and `ConnectionRouter` call them) and to SwiftNIO's `HTTPRequestDecoder`, which reads
/// them afterwards in the supervisor's own pipeline and in the workers. The properties:
///
/// 1. The supervisor hands the connection on (to a worker, or to its NIO pipeline): SwiftNIO must read a head from
///    the same bytes, with the same method, version, target and the same first `Authorization`, `x-auth-token`,
///    `Last-Event-ID` and `Origin` values, hence the same route, token and Last-Event-ID.
/// 2. The supervisor refuses after reading the head (404, 405, 505: answered by itself): if SwiftNIO reads a
///    head, it must be the same one, so that SwiftNIO would have come to the same refusal.
/// 3. The supervisor refuses the head as malformed: it answers itself and nobody parses the bytes again, so no
///    routing decision can differ; SwiftNIO may be more lenient (obs-fold, bare LF, unknown transfer codings...).
/// 4. The supervisor waits for more bytes (no empty line yet, within the head limit): SwiftNIO must not have read
///    a whole head from them either (else the supervisor would time a valid request out).
public enum RequestHeadDifferential {
    /// `--max-head-bytes`'s default: longer inputs are refused (431) before they are parsed.
    public static let maximumHeadBytes = 8192

    /// Cookie tokens on, so that their reading and their refusals are fuzzed too.
    static let cookieAuth = CookieAuth(name: "sse_token", cors: CORSPolicy(allowedOrigins: ["https://app.example"], allowsCredentials: true))

    public static func check(_ input: UnsafeRawBufferPointer) -> Finding? {
        guard let headLength = RequestHeadPeek.headLength(in: input) else {
            if input.count <= maximumHeadBytes, case .head(let head) = NIORequestDecoding.decode(input) {
                return Finding("the supervisor waits for the end of the head, SwiftNIO read one: \(head)")
            }
            return nil
        }
        guard headLength <= maximumHeadBytes else { return nil }
        let head = UnsafeRawBufferPointer(rebasing: input[..<headLength])
        let decision = RoutingDecision(head: Array(head), cookieAuth: Self.cookieAuth)
        let peek: RequestHeadPeek
        do {
            peek = try RequestHeadPeek.parse(head)
        } catch {
            guard case .refuse(error.error, origin: nil) = decision else {
                return Finding("refused as \(error), but the router decided \(decision)")
            }
            return nil
        }
        guard RoutingDecision(peek, cookieAuth: Self.cookieAuth) == decision else { return Finding("the router decided \(decision) for \(peek)") }
        switch NIORequestDecoding.decode(head) {
        case .head(let nioHead):
            let nioPeek = RequestHeadPeek(nioHead)
            guard nioPeek == peek else { return Finding("the supervisor read \(peek), SwiftNIO \(nioPeek)") }
            return nil
        case .refused(let error):
            if case .refuse = decision { return nil }
            return Finding("the supervisor decided \(decision) for \(peek), SwiftNIO refused: \(error)")
        case .incomplete:
            if case .refuse = decision { return nil }
            return Finding("the supervisor decided \(decision) for \(peek), SwiftNIO waits for more")
        }
    }
}

extension RequestHeadPeek {
    /// What the supervisor reads, taken from the head SwiftNIO parsed instead. SwiftNIO keeps the whitespace that
    /// ends a value, which RFC 9110 §5.5 says is not part of it (the supervisor drops it, and `TokenLocation` trims
    /// tokens either way): it is dropped here before the values are compared.
    init(_ head: HTTPRequestHead) {
        func value(_ name: String) -> String? {
            guard let raw = head.headers.first(name: name) else { return nil }
            var end = raw.utf8.endIndex
            while end > raw.utf8.startIndex, [UInt8(ascii: " "), UInt8(ascii: "\t")].contains(raw.utf8[raw.utf8.index(before: end)]) {
                end = raw.utf8.index(before: end)
            }
            return String(raw[..<end])
        }
        self.init(
            method: head.method, version: head.version, target: head.uri, authorization: value("authorization"),
            xAuthToken: value("x-auth-token"), lastEventID: value("last-event-id"), origin: value("origin"), cookie: value("cookie"),
            host: value("host"))
    }
}

/// SwiftNIO's request decoder, as the supervisor's and the workers' pipelines run it, on a fresh channel.
enum NIORequestDecoding {
    enum Outcome {
        case head(HTTPRequestHead)
        case refused(any Error)
        case incomplete
    }

    static func decode(_ bytes: UnsafeRawBufferPointer) -> Outcome {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(HTTPRequestDecoder()))
        defer { _ = try? channel.finish() }
        var buffer = channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        var failure: (any Error)?
        do {
            try channel.writeInbound(buffer)
        } catch {
            failure = error
        }
        while let part = try? channel.readInbound(as: HTTPServerRequestPart.self) {
            if case .head(let head) = part { return .head(head) }
        }
        return failure.map { .refused($0) } ?? .incomplete
    }
}
