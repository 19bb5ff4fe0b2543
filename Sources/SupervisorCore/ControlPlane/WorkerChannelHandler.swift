import Logging
import NIOCore
import Shared

/// The supervisor's end of one worker's control channel: each message becomes an event of the control plane.
/// On the plane's event loop, like the plane.
final class WorkerChannelHandler: ChannelInboundHandler {
    typealias InboundIn = ControlMessage

    private let plane: NIOLoopBound<ControlPlane>
    private let worker: WorkerHandle
    private let logger: Logger

    init(plane: NIOLoopBound<ControlPlane>, worker: WorkerHandle, logger: Logger) {
        self.plane = plane
        self.worker = worker
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let message = Self.unwrapInboundIn(data)
        switch message {
        case .hello(let hello):
            plane.value.workerSaidHello(worker, hello)
        case .stats(let report):
            plane.value.workerReported(worker, report)
        case .pong:
            plane.value.workerAnswered(worker)
        case .subscribed, .unsubscribed, .forgotten:
            plane.value.subscriptionsChanged(message, from: worker)
        case .migrationDone:
            plane.value.migrationFinished(worker)
        case .streamOpened(let stream):
            plane.value.streamOpenedHere(stream)
        case .streamClosed(let stream):
            plane.value.streamClosedHere(stream)
        case .awaitChangesLogged(let token):
            plane.value.answerWhenChangesLogged(token, to: worker)
        case .presenceAnswer(let answer):
            plane.value.presenceAnswered(answer, by: worker)
        case .presenceChanged(let userID, let online):
            plane.value.presenceChanged(userID, online: online)
        case .counters(let counters):
            plane.value.workerCounted(worker, counters)
        case .publish, .historyEntry, .historyEnd, .restoreTopics, .dropTopics, .ping, .shutdown, .migrate, .endStream,
            .changesLogged, .presenceQuery:
            logger.error(
                "worker sent a supervisor-only message; closing its control channel",
                metadata: ["worker": "\(worker.shard)", "pid": "\(worker.pid)"])
            context.close(promise: nil)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { plane.value.workerDrained(worker) }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        // Later, not now: this can run inside a write the plane is making (a publish, a replay).
        let (plane, worker) = (plane, NIOLoopBound(worker, eventLoop: context.eventLoop))
        context.eventLoop.execute { plane.value.controlClosed(worker.value) }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.error("control channel failed; closing it", metadata: ["worker": "\(worker.shard)", "error": "\(error)"])
        context.close(promise: nil)
    }
}
