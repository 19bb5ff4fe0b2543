import Logging
import NIOCore
import NIOPosix
import Shared

/// A worker process's life once its arguments are parsed and its privileges dropped: builds the hub on one event
/// loop, connects the control channel and the hand-off socket, serves until the supervisor says stop (or is gone),
/// then ends every stream cleanly.
public struct WorkerRuntime: Sendable {
    public var shard: Int
    /// The control socket (stream, framed control protocol).
    public var controlFD: CInt
    /// The hand-off socket (`SOCK_SEQPACKET`, `SCM_RIGHTS`).
    public var handoffFD: CInt
    /// The hand-off doorbell: a pipe's read end, a byte after every connection sent.
    public var doorbellFD: CInt
    /// The supervisor's epoch (first part of every event id).
    public var epoch: UInt64
    public var stream: StreamOptions
    public var logger: Logger
    /// A hub across hosts (`--hub-wide-users`): streams opening and closing are reported, and users are forgotten by the hub.
    public var hubWideUsers = false

    public init(
        shard: Int, controlFD: CInt, handoffFD: CInt, doorbellFD: CInt, epoch: UInt64, stream: StreamOptions, logger: Logger,
        hubWideUsers: Bool = false
    ) {
        self.hubWideUsers = hubWideUsers
        self.shard = shard
        self.controlFD = controlFD
        self.handoffFD = handoffFD
        self.doorbellFD = doorbellFD
        self.epoch = epoch
        self.stream = stream
        self.logger = logger
    }

    var hubSettings: StreamHub.Settings {
        StreamHub.Settings(
            heartbeat: .seconds(Int64(stream.heartbeat)), topicGrace: .seconds(Int64(stream.topicGrace)), epoch: epoch,
            historySize: stream.historySize, historyTTL: Int64(stream.historyTtl) * 1000, historyBytes: stream.historyBytes,
            maximumTopicsPerUser: stream.maxTopicsPerUser, retryMilliseconds: stream.retryMs,
            maximumPendingBytes: stream.maxPendingBytes, maximumStreamsPerUser: stream.maxStreamsPerUser, hubWideUsers: hubWideUsers,
            // Across hosts the hub's log decides who came online or went offline, not one worker.
            presenceGrace: stream.presenceEvents && !hubWideUsers ? .seconds(Int64(stream.presenceGrace)) : nil)
    }

    public func run() async throws {
        let (logger, stream, settings) = (logger, stream, hubSettings)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let eventLoop = group.next()
        let (hub, sockets) = try await eventLoop.submit {
            let hub = StreamHub(eventLoop: eventLoop, settings: settings, logger: logger)
            let sockets = try StreamSockets(eventLoop: eventLoop, maximumPendingBytes: stream.maxPendingBytes, logger: logger)
            return (NIOLoopBound(hub, eventLoop: eventLoop), NIOLoopBound(sockets, eventLoop: eventLoop))
        }.get()
        let addressLimiter =
            stream.maxWorkerConnsPerIp > 0
            ? NIOLoopBoundBox.makeBoxSendingValue(
                ClientAddressLimiter(policy: .init(maximumHeld: stream.maxWorkerConnsPerIp)), eventLoop: eventLoop)
            : nil
        let watcher = try await eventLoop.submit {
            sockets.value.onClosed = { socket in
                hub.value.detach(socket: socket)
                if let address = socket.address { addressLimiter?.value.release(address) }
            }
            sockets.value.onSlowConsumer = { socket in hub.value.slowConsumerDropped(socket) }
            return try StreamReadinessWatcher.start(sockets, epoll: sockets.value.epoll.descriptor, eventLoop: eventLoop, logger: logger)
        }.get()

        let stopped = eventLoop.makePromise(of: Void.self)
        let control = try await WorkerControl.connect(
            fd: controlFD, handoffSocket: handoffFD, group: group, hub: hub, logger: logger, stopped: stopped)
        let responses = HTTPResponses(cors: stream.corsPolicy)
        try await HandoffReceiver(
            socket: handoffFD, doorbell: doorbellFD, eventLoop: eventLoop, hub: hub, sockets: sockets, responses: responses,
            logger: logger, requestTimeout: .seconds(Int64(stream.requestTimeout)), addressLimiter: addressLimiter
        )
        .start { stopped.succeed() }.get()

        try await eventLoop.submit {
            hub.value.start { message in control.writeAndFlush(message, promise: nil) }
        }.get()
        control.writeAndFlush(ControlMessage.hello(WorkerHello(shard: shard, pid: Syscall.processID)), promise: nil)
        logger.info("worker serving", metadata: ["pid": "\(Syscall.processID)", "event": "worker-serving"])

        // `stopped` never fails: it succeeds when the supervisor asks, or when its end of a channel closes.
        try? await stopped.futureResult.get()
        try await eventLoop.submit { hub.value.endAllStreams() }.get()
        watcher.stop()
        do {
            try await control.close()
        } catch {
            // Already closed by the supervisor's end: nothing left to do.
            logger.debug("control channel was closed already", metadata: ["error": "\(error)"])
        }
        logger.info("worker stopped")
        try await group.shutdownGracefully()
    }
}
