import Logging
import NIOCore
import NIOPosix
import Shared

/// The worker's end of its control channel.
enum WorkerControl {
    static func connect(
        fd: CInt, shard: Int, group: any EventLoopGroup, hub: NIOLoopBound<StreamHub>, logger: Logger,
        stopped: EventLoopPromise<Void>
    ) async throws -> any Channel {
        try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        ByteToMessageHandler(ControlFrameDecoder()),
                        MessageToByteHandler(ControlFrameEncoder()),
                        ControlHandler(hub: hub, logger: logger, stopped: stopped),
                    ])
                }
            }
            .withConnectedSocket(fd)
            .get()
    }

    final class ControlHandler: ChannelInboundHandler {
        typealias InboundIn = ControlMessage
        typealias OutboundOut = ControlMessage

        let hub: NIOLoopBound<StreamHub>
        let logger: Logger
        let stopped: EventLoopPromise<Void>

        init(hub: NIOLoopBound<StreamHub>, logger: Logger, stopped: EventLoopPromise<Void>) {
            self.hub = hub
            self.logger = logger
            self.stopped = stopped
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch Self.unwrapInboundIn(data) {
            case .publish(let command):
                hub.value.publish(command)
            case .historyEntry(let command):
                hub.value.recordHistory(command)
            case .historyEnd(let bounds):
                hub.value.historyComplete(bounds)
            case .ping(let nonce):
                context.writeAndFlush(Self.wrapOutboundOut(.pong(nonce)), promise: nil)
            case .shutdown:
                logger.info("supervisor asked this worker to stop")
                stopped.succeed()
            case .hello, .stats, .pong:
                logger.error("supervisor sent a worker-only message; ignored")
            }
        }

        /// The end of one read from the supervisor: send the events it carried.
        func channelReadComplete(context: ChannelHandlerContext) {
            hub.value.flushPublished()
            context.fireChannelReadComplete()
        }

        func channelInactive(context: ChannelHandlerContext) {
            logger.notice("control channel closed: the supervisor is gone; stopping")
            stopped.succeed()
            context.fireChannelInactive()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            logger.error("control channel failed", metadata: ["error": "\(error)"])
            context.close(promise: nil)
        }
    }
}
