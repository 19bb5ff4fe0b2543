import ArgumentParser
import Logging
import NIOCore
import NIOPosix
import Shared

/// `sse-worker`: started by `sse-supervisor` only, with its control socket and hand-off socket in place.
/// Entered through `WorkerMain`, which drops privileges first.
struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sse-worker",
        abstract: "An sse-hub worker process. Started by sse-supervisor; not meant to be run by hand."
    )

    @Option(help: "This worker's shard number.")
    var shard: Int

    @Option(help: "Descriptor of the control socket (stream, framed control protocol).")
    var controlFd: CInt

    @Option(help: "Descriptor of the hand-off socket (SOCK_SEQPACKET, SCM_RIGHTS).")
    var handoffFd: CInt

    @Option(help: "Descriptor of the hand-off doorbell (a pipe's read end: a byte after every connection sent).")
    var doorbellFd: CInt

    @Option(help: "The supervisor's epoch (first part of every event id).")
    var epoch: UInt64

    @OptionGroup var stream: StreamOptions

    @Option(help: "Log level.")
    var logLevel: Logger.Level = .info

    @Option(help: "The user to run as; required when started as root (privileges are dropped before anything else).")
    var user: String?

    var logger: Logger {
        var logger = Logger(label: "sse-worker")
        logger[metadataKey: "worker"] = "\(shard)"
        return logger
    }

    /// Runs with logging set up and privileges already dropped (`WorkerMain`).
    func run() async throws {
        let logger = self.logger
        Syscall.ignoreSIGPIPE()
        // If the supervisor dies without telling us, do not linger as an orphan holding clients.
        // (After the privilege drop: changing ids clears the parent-death signal.)
        try Syscall.setParentDeathSignal(SIGTERM)

        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let eventLoop = group.next()
        let hub = try await eventLoop.submit {
            NIOLoopBound(
                StreamHub(
                    eventLoop: eventLoop,
                    settings: .init(
                        heartbeat: .seconds(Int64(stream.heartbeat)), topicGrace: .seconds(Int64(stream.topicGrace)), epoch: epoch,
                        historySize: stream.historySize, historyTTL: Int64(stream.historyTtl) * 1000, historyBytes: stream.historyBytes,
                        maximumTopicsPerUser: stream.maxTopicsPerUser, retryMilliseconds: stream.retryMs,
                        maximumPendingBytes: stream.maxPendingBytes),
                    logger: logger),
                eventLoop: eventLoop)
        }.get()

        let stopped = eventLoop.makePromise(of: Void.self)
        let control = try await WorkerControl.connect(
            fd: controlFd, handoffSocket: handoffFd, shard: shard, group: group, hub: hub, logger: logger, stopped: stopped)
        let responses = HTTPResponses(cors: CORSPolicy(allowedOrigins: stream.corsOrigins))
        try await HandoffReceiver(
            socket: handoffFd, doorbell: doorbellFd, eventLoop: eventLoop, hub: hub, responses: responses, logger: logger,
            maximumPendingBytes: stream.maxPendingBytes, requestTimeout: .seconds(Int64(stream.requestTimeout)),
            addressLimiter: stream.maxWorkerConnsPerIp > 0
                ? NIOLoopBoundBox.makeBoxSendingValue(
                    ClientAddressLimiter(policy: .init(maximumHeld: stream.maxWorkerConnsPerIp)), eventLoop: eventLoop)
                : nil
        )
        .start { stopped.succeed() }.get()

        try await eventLoop.submit {
            hub.value.start { message in control.writeAndFlush(message, promise: nil) }
        }.get()
        control.writeAndFlush(ControlMessage.hello(WorkerHello(shard: shard, pid: Syscall.processID)), promise: nil)
        logger.info("worker serving", metadata: ["pid": "\(Syscall.processID)"])

        try? await stopped.futureResult.get()
        try await eventLoop.submit { hub.value.endAllStreams() }.get()
        try? await control.close()
        logger.info("worker stopped")
        try await group.shutdownGracefully()
    }
}
