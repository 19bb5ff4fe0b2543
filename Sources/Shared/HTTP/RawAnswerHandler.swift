import NIOCore
import NIOHTTP1

/// Writes a canned answer, half-closes, drains the client's input for a moment, then closes.
public final class RawAnswerHandler: ChannelInboundHandler, Sendable {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    let response: String

    public init(response: String) { self.response = response }

    private static func head(status: Int, _ fields: [(String, String)]) -> String {
        "HTTP/1.1 \(status) \(HTTPResponseStatus(statusCode: status).reasonPhrase)\r\n"
            + fields.map { "\($0.0): \($0.1)\r\n" }.joined() + "Connection: close\r\n\r\n"
    }

    /// A JSON error, as every other error is answered.
    public static func error(status: Int, message: String, extraHeaders: [(String, String)] = []) -> String {
        let body = HubJSON.encode(FailureBody(msg: message))
        return head(
            status: status,
            [("Content-Type", "application/json; charset=utf-8"), ("Content-Length", String(body.utf8.count))] + extraHeaders)
            + body
    }

    /// An event stream that asks the client to come back: `retry:`, `event: unavailable`, end.
    public static func streamUnavailable(message: String, retryMilliseconds: Int, extraHeaders: [(String, String)] = []) -> String {
        var frames = ByteBuffer(string: "retry: \(retryMilliseconds)\n")
        SSEWireFormat.event("unavailable", data: HubJSON.encode(UnavailableEventData(msg: message, retryMs: retryMilliseconds)), into: &frames)
        var body = SSEWireFormat.chunk(frames)
        body.writeImmutableBuffer(SSEWireFormat.lastChunk)
        return head(
            status: 200,
            [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"), ("Transfer-Encoding", "chunked")] + extraHeaders)
            + String(buffer: body)
    }

    public func channelActive(context: ChannelHandlerContext) {
        let channel = context.channel
        var buffer = channel.allocator.buffer(capacity: response.utf8.count)
        buffer.writeString(response)
        context.writeAndFlush(Self.wrapOutboundOut(buffer)).assumeIsolated().whenComplete { _ in
            channel.close(mode: .output, promise: nil)
        }
        ConnectionDeadline.schedule(context, after: .seconds(2)) { channel.close(promise: nil) }
        context.fireChannelActive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {}

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelEvent, case .inputClosed = event as! ChannelEvent {
            context.close(promise: nil)
        }
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
