import NIOCore
import NIOHTTP1
import NIOPosix

/// One request on its own connection, answered with its status code (0 when the connection closed first):
/// how the load tool publishes with `--publish-connections new` (its default).
enum OneShotRequest {
    static func send(_ request: ByteBuffer, host: String, port: Int, group: any EventLoopGroup) -> EventLoopFuture<Int> {
        let promise = group.next().makePromise(of: Int.self)
        RequestSink.connect(host: host, port: port, group: group) { StatusHandler(promise: promise) }
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    channel.eventLoop.execute { RequestSink.send(request, on: channel) }
                case .failure:
                    promise.succeed(0)
                }
            }
        return promise.futureResult
    }

    /// Completes the promise with the response's status, then closes.
    final class StatusHandler: ChannelInboundHandler {
        typealias InboundIn = HTTPClientResponsePart
        let promise: EventLoopPromise<Int>

        init(promise: EventLoopPromise<Int>) { self.promise = promise }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            if case .head(let head) = Self.unwrapInboundIn(data) {
                promise.succeed(Int(head.status.code))
                context.close(promise: nil)
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            promise.succeed(0)  // ignored when already completed
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }
}

/// Writes a prepared request's bytes from the head of the pipeline. The response decoder pairs each response
/// with a request it saw written, so it is shown a request head, which this handler then drops.
final class RequestSink: ChannelOutboundHandler, Sendable {
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = ByteBuffer

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        promise?.succeed()
    }

    /// A connection to `host:port` whose pipeline takes raw requests (`send`): this sink, SwiftNIO's response decoder,
    /// then the handler `answers` makes, which reads the responses.
    static func connect(
        host: String, port: Int, group: any EventLoopGroup, answers: @escaping @Sendable () -> any ChannelHandler
    ) -> EventLoopFuture<any Channel> {
        ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        RequestSink(), ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .dropBytes)), answers(),
                    ])
                }
            }
            .connect(host: host, port: port)
    }

    /// On `channel`'s event loop.
    static func send(_ request: ByteBuffer, on channel: any Channel) {
        channel.pipeline.syncOperations.write(NIOAny(HTTPClientRequestPart.head(.init(version: .http1_1, method: .GET, uri: "/"))), promise: nil)
        if let context = try? channel.pipeline.syncOperations.context(handlerType: RequestSink.self) {
            context.writeAndFlush(NIOAny(request), promise: nil)
        }
    }
}
