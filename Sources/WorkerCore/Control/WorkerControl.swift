import Logging
import NIOCore
import NIOPosix
import Shared

/// The worker's end of its control channel.
enum WorkerControl {
    static func connect(
        fd: CInt, handoffSocket: CInt, group: any EventLoopGroup, hub: NIOLoopBound<StreamHub>, logger: Logger,
        stopped: EventLoopPromise<Void>
    ) async throws -> any Channel {
        try await ControlChannel.adopt(fd, group: group) {
            ControlHandler(hub: hub, handoffSocket: handoffSocket, logger: logger, stopped: stopped)
        }.get()
    }

    final class ControlHandler: ChannelInboundHandler {
        typealias InboundIn = ControlMessage
        typealias OutboundOut = ControlMessage

        let hub: NIOLoopBound<StreamHub>
        /// The hand-off socket: connections arrive on it, and on reload live streams leave through it.
        let handoffSocket: CInt
        let logger: Logger
        let stopped: EventLoopPromise<Void>

        init(hub: NIOLoopBound<StreamHub>, handoffSocket: CInt, logger: Logger, stopped: EventLoopPromise<Void>) {
            self.hub = hub
            self.handoffSocket = handoffSocket
            self.logger = logger
            self.stopped = stopped
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let message = Self.unwrapInboundIn(data)
            switch message {
            case .publish, .historyEntry, .ping: break
            // The events held so far go out before anything else touches the streams (a migration, an ended stream).
            default: hub.value.flushPublished()
            }
            switch message {
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
            case .migrate:
                migrate(channel: context.channel)
            case .restoreTopics(let restored):
                hub.value.restoreTopics(restored)
            case .dropTopics(let dropped):
                hub.value.dropTopics(dropped)
            case .endStream(let stream):
                hub.value.endStream(stream)
            case .changesLogged(let token, let committed):
                hub.value.changesLogged(token, committed: committed)
            case .presenceQuery(let query):
                context.writeAndFlush(Self.wrapOutboundOut(.presenceAnswer(hub.value.presence(query))), promise: nil)
            case .hello, .stats, .pong, .subscribed, .unsubscribed, .forgotten, .migrationDone, .streamOpened, .streamClosed, .counters,
                .awaitChangesLogged, .presenceAnswer, .presenceChanged:
                logger.error("supervisor sent a worker-only message; ignored")
            }
        }

        /// A reload replaces this worker: pass every stream on, then say so.
        private func migrate(channel: any Channel) {
            let (socket, logger) = (handoffSocket, logger)
            logger.info("passing live streams to the new worker", metadata: ["event": "migration-begin"])
            var passed = 0
            hub.value.migrateAll(
                send: { fd, handoff in
                    do {
                        try DescriptorPassing.send(descriptor: fd, payload: try handoff.encoded(), over: socket)
                        passed += 1
                        return true
                    } catch {
                        logger.warning("a stream could not be passed on", metadata: ["error": "\(error)"])
                        return false
                    }
                },
                done: {
                    logger.info("live streams passed on", metadata: ["event": "migration-done", "streams": "\(passed)"])
                    channel.writeAndFlush(ControlMessage.migrationDone, promise: nil)
                })
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
