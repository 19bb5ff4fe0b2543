import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Shared

/// Serves, with SwiftNIO, the connections the supervisor answers itself.
struct LocalHTTPServer: Sendable {
    enum Disposition: Sendable {
        /// Route the request normally.
        case normal
        /// Answer the request with this error whatever it asks for.
        case reject(APIError)
    }

    let group: any EventLoopGroup
    let api: SupervisorAPI
    let logger: Logger
    /// A request must arrive whole within this time.
    var requestTimeout: TimeAmount = .seconds(30)

    /// Adopts `fd` (its unread request still in the socket) into an HTTP/1 pipeline.
    func serve(_ fd: CInt, disposition: LocalHTTPServer.Disposition) {
        let timeout = requestTimeout
        ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(
                        SupervisorHTTPHandler(api: api, disposition: disposition))
                    channel.eventLoop.scheduleTask(in: timeout) { channel.close(promise: nil) }
                }
            }
            .withConnectedSocket(fd)
            .whenFailure { error in
                logger.warning("cannot adopt a client connection", metadata: ["error": "\(error)"])
            }
    }

    /// Answers a connection without parsing its request (its head could not be read, too large or too slow, or it
    /// was read already), reading and dropping what the client still sends, so the answer is not lost to a reset.
    /// `origin`: the request's, when it is known, for the CORS headers.
    func reject(_ fd: CInt, status: Int, message: String, origin: String? = nil) {
        let cors = api.responses.cors.responseHeaders(origin: origin)
        ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        RawRejectionHandler(status: status, message: message, extraHeaders: cors))
                }
            }
            .withConnectedSocket(fd)
            .whenFailure { error in
                logger.warning("cannot adopt a client connection", metadata: ["error": "\(error)"])
            }
    }
}

/// Writes a canned JSON error, half-closes, drains the client's input for a moment, then closes.
final class RawRejectionHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let response: String

    init(status: Int, message: String, extraHeaders: [(String, String)] = []) {
        let body = HubJSON.encode(FailureBody(msg: message))
        let reason = HTTPResponseStatus(statusCode: status).reasonPhrase
        let extra = extraHeaders.map { "\($0.0): \($0.1)\r\n" }.joined()
        response =
            "HTTP/1.1 \(status) \(reason)\r\nContent-Type: application/json; charset=utf-8\r\n"
            + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\(extra)\r\n\(body)"
    }

    func channelActive(context: ChannelHandlerContext) {
        let channel = context.channel
        var buffer = channel.allocator.buffer(capacity: response.utf8.count)
        buffer.writeString(response)
        context.writeAndFlush(Self.wrapOutboundOut(buffer)).assumeIsolated().whenComplete { _ in
            channel.close(mode: .output, promise: nil)
        }
        channel.eventLoop.scheduleTask(in: .seconds(2)) { channel.close(promise: nil) }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelEvent, case .inputClosed = event as! ChannelEvent {
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
