import NIOCore
import NIOHTTP1

/// What a request's `Expect` field asks of the server before it sends its body (RFC 9110 §10.1.1). curl sends
/// `Expect: 100-continue` with any body over 1 KiB and holds the body back until it hears `100 Continue`, or for a
/// second: unanswered, each such publish would wait that second.
public enum Expectation: Equatable, Sendable {
    /// Nothing expected (or an HTTP/1.0 request, whose expectations a server must ignore).
    case none
    /// The client waits for `100 Continue` before it sends its body.
    case continueBeforeBody
    /// An expectation this server cannot meet: answered 417.
    case unsupported

    public init(_ head: HTTPRequestHead) {
        let values = head.headers[canonicalForm: "expect"]
        guard !values.isEmpty, (head.version.major, head.version.minor) >= (1, 1) else {
            self = .none
            return
        }
        let continues = values.allSatisfy { $0.utf8.elementsEqual("100-continue".utf8, by: { ASCII.lowercased($0) == $1 }) }
        self = continues ? .continueBeforeBody : .unsupported
    }

    /// ASCII case folding, without Foundation's locale-aware `lowercased()`.
    private enum ASCII {
        static func lowercased(_ byte: UInt8) -> UInt8 { (0x41...0x5A).contains(byte) ? byte | 0x20 : byte }
    }
}

extension HTTPResponses {
    /// What a request's head alone settles before its body is read, in the order that matters: a body announced over
    /// `body`'s limit is refused (413) before any `100 Continue`, so the client need not send it; then the `Expect`
    /// field is met (`meetExpectation`). Returns the refusal to answer, if any.
    public func refusalBeforeBody(of head: HTTPRequestHead, collecting body: BodyCollector, context: ChannelHandlerContext) -> APIError? {
        body.refuses(head) ? .bodyTooLarge : meetExpectation(of: head, context: context)
    }

    /// Meets the `Expect` field of a request whose body is still to come: says `100 Continue` to a client that
    /// waits for it. Returns the error to answer instead (417) for an expectation this server cannot meet. Call
    /// after the checks that refuse the request from its head alone: a final answer spares the client its body.
    public func meetExpectation(of head: HTTPRequestHead, context: ChannelHandlerContext) -> APIError? {
        switch Expectation(head) {
        case .none:
            return nil
        case .continueBeforeBody:
            let interim = HTTPResponseHead(version: .http1_1, status: .continue)
            context.writeAndFlush(NIOAny(HTTPServerResponsePart.head(interim)), promise: nil)
            return nil
        case .unsupported:
            return .expectationFailed
        }
    }
}
