import NIOCore
import NIOHTTP1

/// An HTTP/1.1 response's status line and header fields, written in the order and casing given: the one writer of
/// a response head, for the API's answers (`HTTPResponses`, through `HTTPResponsePartEncoder`), the canned ones
/// (`RawAnswerHandler`) and a stream's (the worker's).
public struct ResponseHead: Sendable {
    public var status: HTTPResponseStatus
    public var fields: [(String, String)]

    public init(status: HTTPResponseStatus, fields: [(String, String)]) {
        self.status = status
        self.fields = fields
    }

    /// The status line, each field on a line of its own, then the blank line that ends the head.
    public func write(into buffer: inout ByteBuffer) {
        buffer.writeStaticString("HTTP/1.1 ")
        buffer.writeString(String(status.code))
        buffer.writeStaticString(" ")
        buffer.writeString(status.reasonPhrase)
        buffer.writeStaticString("\r\n")
        for (name, value) in fields {
            buffer.writeString(name)
            buffer.writeStaticString(": ")
            buffer.writeString(value)
            buffer.writeStaticString("\r\n")
        }
        buffer.writeStaticString("\r\n")
    }
}

/// Writes `HTTPServerResponsePart`s as bytes, the head with `ResponseHead`: in place of NIO's `HTTPResponseEncoder`
/// for answers that frame their own body (`Content-Length`, or none where the status has no body) and close the
/// connection after, as every answer of this hub does. It adds no header and encodes no chunks: a body is written
/// as it comes.
public final class HTTPResponsePartEncoder: ChannelOutboundHandler, RemovableChannelHandler, Sendable {
    public typealias OutboundIn = HTTPServerResponsePart
    public typealias OutboundOut = IOData

    public init() {}

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch Self.unwrapOutboundIn(data) {
        case .head(let head):
            var buffer = context.channel.allocator.buffer(capacity: 256)
            ResponseHead(status: head.status, fields: head.headers.map { ($0.name, $0.value) }).write(into: &buffer)
            context.write(Self.wrapOutboundOut(.byteBuffer(buffer)), promise: promise)
        case .body(let body):
            context.write(Self.wrapOutboundOut(body), promise: promise)
        case .end:
            // Nothing to write, but an empty write keeps the promise in order with those before it.
            context.write(Self.wrapOutboundOut(.byteBuffer(context.channel.allocator.buffer(capacity: 0))), promise: promise)
        }
    }
}
