import NIOCore
import NIOHTTP1

/// Writes a canned answer, half-closes, drains the client's input for a moment, then closes.
public final class RawAnswerHandler: ChannelInboundHandler, Sendable {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    let response: String

    public init(response: String) { self.response = response }

    /// The head of a canned answer: it always closes the connection.
    private static func head(status: Int, _ fields: [(String, String)]) -> ByteBuffer {
        var head = ByteBuffer()
        ResponseHead(status: HTTPResponseStatus(statusCode: status), fields: fields + [("Connection", "close")]).write(into: &head)
        return head
    }

    /// A JSON error, as every other error is answered.
    public static func error(status: Int, message: String, extraHeaders: [(String, String)] = []) -> String {
        let body = HubJSON.encode(FailureBody(msg: message))
        var answer = head(
            status: status,
            [("Content-Type", "application/json; charset=utf-8"), ("Content-Length", String(body.utf8.count))] + extraHeaders)
        answer.writeString(body)
        return String(buffer: answer)
    }

    /// An event stream that asks the client to come back: `retry:`, `event: unavailable`, end.
    public static func streamUnavailable(message: String, retryMilliseconds: Int, extraHeaders: [(String, String)] = []) -> String {
        var frames = ByteBuffer()
        SSEWireFormat.retry(retryMilliseconds, into: &frames)
        SSEWireFormat.event("unavailable", data: HubJSON.encode(UnavailableEventData(msg: message, retryMs: retryMilliseconds)), into: &frames)
        var answer = head(
            status: 200,
            [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"), ("Transfer-Encoding", "chunked")] + extraHeaders)
        SSEWireFormat.writeChunk(frames, into: &answer)
        answer.writeImmutableBuffer(SSEWireFormat.lastChunk)
        return String(buffer: answer)
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
