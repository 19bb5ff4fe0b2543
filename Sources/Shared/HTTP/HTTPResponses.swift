import NIOCore
import NIOHTTP1

/// Writing whole API responses on a NIO HTTP/1 server pipeline, the same way in the supervisor and the workers,
/// as `HTTPServerResponsePart`s: `HTTPResponsePartEncoder` (or NIO's `HTTPResponseEncoder`, which writes the same
/// bytes for these answers) turns them into bytes.
///
/// A non-stream response closes its connection afterwards unless it is given `keepAlive`: a connection reaches a
/// worker for one request only, so a pooled connection can never carry a second user's request to the wrong shard.
/// Only the supervisor keeps connections open, for a publisher's next request (`SupervisorHTTPHandler`).
public struct HTTPResponses: Sendable {
    public var cors: CORSPolicy

    public init(cors: CORSPolicy) { self.cors = cors }

    public func json(
        _ body: some Encodable, status: HTTPResponseStatus = .ok, origin: String?,
        extraHeaders: [(String, String)] = [], keepAlive: TimeAmount? = nil, context: ChannelHandlerContext
    ) {
        json(
            encoded: HubJSON.encode(body), status: status, origin: origin, extraHeaders: extraHeaders, keepAlive: keepAlive,
            context: context)
    }

    /// A body already encoded (`HubJSON.encode`): for an answer that never changes, encoded once. With `keepAlive`
    /// (the idle time the server allows, said in `Keep-Alive: timeout=`), the connection stays open.
    public func json(
        encoded body: String, status: HTTPResponseStatus = .ok, origin: String?,
        extraHeaders: [(String, String)] = [], keepAlive: TimeAmount? = nil, context: ChannelHandlerContext
    ) {
        var buffer = context.channel.allocator.buffer(capacity: body.utf8.count)
        buffer.writeString(body)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json; charset=utf-8")
        headers.add(name: "Content-Length", value: String(buffer.readableBytes))
        if let keepAlive {
            // HTTP/1.1 keeps a connection by default; the hint lets a client close an idle one before the server does.
            headers.add(name: "Keep-Alive", value: "timeout=\(keepAlive.nanoseconds / 1_000_000_000)")
        } else {
            headers.add(name: "Connection", value: "close")
        }
        headers.add(contentsOf: cors.responseHeaders(origin: origin) + extraHeaders)
        write(status: status, headers: headers, body: buffer, closing: keepAlive == nil, context: context)
    }

    public func error(_ error: APIError, origin: String?, keepAlive: TimeAmount? = nil, context: ChannelHandlerContext) {
        let status = HTTPResponseStatus(statusCode: error.status)
        var extra: [(String, String)] = []
        if let allow = error.allow { extra.append(("Allow", allow)) }
        json(FailureBody(msg: error.message), status: status, origin: origin, extraHeaders: extra, keepAlive: keepAlive, context: context)
    }

    public func preflight(route: APIRoute, origin: String?, context: ChannelHandlerContext) {
        // No `Content-Length`: a 204 has no body and must not carry one (RFC 9110 §8.6); NIO's encoder drops it.
        var headers = HTTPHeaders()
        headers.add(name: "Connection", value: "close")
        headers.add(contentsOf: cors.preflightHeaders(origin: origin, route: route))
        write(status: .noContent, headers: headers, body: nil, closing: true, context: context)
    }

    private func write(status: HTTPResponseStatus, headers: HTTPHeaders, body: ByteBuffer?, closing: Bool, context: ChannelHandlerContext) {
        let head = HTTPResponseHead(version: .http1_1, status: status, headers: headers)
        context.write(NIOAny(HTTPServerResponsePart.head(head)), promise: nil)
        if let body {
            context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(body))), promise: nil)
        }
        guard closing else { return context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)), promise: nil) }
        let channel = context.channel
        context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil))).assumeIsolated().whenComplete { _ in
            channel.close(promise: nil)
        }
    }
}

/// Collects a request body up to a limit; past it the request is answered 413.
public struct BodyCollector: Sendable {
    public static let defaultLimit = 64 * 1024
    public let limit: Int
    public private(set) var body = ByteBuffer()
    public private(set) var overflowed = false

    public init(limit: Int = defaultLimit) { self.limit = limit }

    /// Whether a request announces (`Content-Length`) a body over the limit: refused before any of it is read.
    public func refuses(_ head: HTTPRequestHead) -> Bool {
        head.headers.first(name: "content-length").flatMap(Int.init).map { $0 > limit } ?? false
    }

    /// Adds `chunk`; false once the body is over the limit (it is then dropped).
    @discardableResult
    public mutating func append(_ chunk: ByteBuffer) -> Bool {
        append0(chunk)
        return !overflowed
    }

    private mutating func append0(_ chunk: ByteBuffer) {
        guard !overflowed else { return }
        if body.readableBytes + chunk.readableBytes > limit {
            overflowed = true
            body = ByteBuffer()
        } else {
            var chunk = chunk
            body.writeBuffer(&chunk)
        }
    }
}

extension HTTPResponses {
    /// The HTTP codec of a connection that serves one request and then closes: SwiftNIO's request decoder, and
    /// the answers written by `ResponseHead` (through `HTTPResponsePartEncoder`), the one writer of a response head.
    /// `forwardingLeftOverBytes`: bytes behind the request (a pipelined second one) reach the handler instead of
    /// being dropped. `maximumHeadBytes` bounds a head's header fields (names and values), for heads no reader
    /// before SwiftNIO's has bounded: a kept connection's later requests. Past it, SwiftNIO's parser fails with
    /// `HTTPParserError.headerOverflow`.
    public static func oneRequestCodec(forwardingLeftOverBytes: Bool = false, maximumHeadBytes: Int? = nil) -> [any ChannelHandler] {
        var limits = NIOHTTPDecoderLimitConfiguration()
        if let maximumHeadBytes {
            limits.maxHeaderFieldSize = maximumHeadBytes
            limits.maxHeaderListSize = maximumHeadBytes
        }
        let decoder = HTTPRequestDecoder(leftOverBytesStrategy: forwardingLeftOverBytes ? .forwardBytes : .dropBytes, limitConfiguration: limits)
        return [ByteToMessageHandler(decoder), HTTPResponsePartEncoder()]
    }
}
