#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import Shared

/// The supervisor's control plane: the shards and their worker processes, the event sequence and history,
/// publish routing, stats, reloads and shutdown. It lives on one event loop, like a worker's `StreamHub`: every
/// method runs there (`NIOLoopBound`, `preconditionInEventLoop`), so there is no lock, and nothing here waits.
///
/// A shard's state changes only through its `ShardMachine`, one event at a time (`apply`): a worker's hello, the
/// end of its migration, its exit, a reload, shutdown. After each change the plane publishes the hand-off table the
/// accept thread reads (`HandoffTablePublisher`); the accept thread never calls in here.
final class ControlPlane {
    struct Settings: Sendable {
        var shardCount: Int
        var workerPath: String
        /// The arguments of the worker of a shard (`WorkerLaunch.arguments`).
        var workerArguments: @Sendable (Int) -> [String]
        var shutdownGrace: Duration = .seconds(10)
        /// Bounds of the event history kept for Last-Event-ID replay.
        var historySize: Int
        var historyTTL: Duration
        var historyBytes: Int
        /// This run's epoch: its start time in milliseconds since 1970, the first part of every event id.
        var epoch: UInt64
        /// Bytes of publishes that may wait for a worker to read them (`--worker-backlog-bytes`); past it the
        /// worker is lagging: it gets no more until it has drained, then catches up from the history.
        var workerBacklogBytes = 8 * 1024 * 1024
        var liveness = WorkerLiveness.Policy()
        var restartBackoff = RestartBackoff()
        /// The host's metrics (exported with `--metrics-listen`); nil: counted for nobody.
        var metrics: HostMetrics?
        /// How long a retiring worker has to pass its streams on, and then to exit, before it is stopped or killed.
        var migrationPatience: Duration = .seconds(30)
        var retiringExitPatience: Duration = .seconds(10)
    }

    let eventLoop: any EventLoop
    let settings: Settings
    let logger: Logger
    let tables: HandoffTablePublisher
    let children: ChildProcesses
    /// Each shard's state machine: the only place a shard's state changes.
    var shards: [ShardMachine<WorkerHandle>]
    /// Restarts of each shard's worker after a failure (health's `restarts`).
    private(set) var restarts: [Int]
    private var generations: [Int]
    /// Every event published in this epoch, within bounds: a starting worker is given its share.
    var history: EventHistory
    /// Every user's topics: a starting worker is given its shard's, like the history.
    var subscriptions: SubscriptionLedger
    var stats: StatsLedger
    let trimmer = HeapTrimmer()
    /// Liveness pings sent: each one's nonce.
    var pingsSent: UInt64 = 0
    var serviceManager: ServiceManagerLink
    /// With `--postgres-url`: the log this host shares with the others of its hub (users' changes are recorded
    /// there), and the link's state and the other hosts as the log last reported them.
    let sharedLog: (any SharedEventLog)?
    private(set) var logStatus: SharedLogStatus?
    let metrics: HostMetrics
    /// Status pages following the host (`/status/events` on the metrics listener).
    var statusStreams: [ObjectIdentifier: any Channel] = [:]
    /// Presence questions put to the workers and not answered yet (`ControlPlane+Presence`).
    var presenceGatherings: [UInt64: PresenceGathering] = [:]
    var presenceQueriesAsked: UInt64 = 0
    var reloads: ReloadQueue
    /// What an in-place upgrade needs beyond the plane (set by the runtime): the program to execute, the listeners,
    /// the accept thread; and this process's life across upgrades.
    var upgrade: UpgradeResources?
    var life: ProcessLife
    /// Where this host stands in the shared log: the last event and user change it applied.
    var logCursor = SharedLogCursor(event: 0, change: 0)
    private var lastTable: HandoffTable?
    private(set) var shuttingDown = false
    private var stopped: EventLoopPromise<Void>?

    /// With `logStart`, the plane joins a shared log: its history begins with the log's retained tail. With
    /// `resuming`, this process re-executed itself in place: the plane carries on from its previous program's state
    /// (its workers are taken over by `start`).
    init(
        eventLoop: any EventLoop, settings: Settings, tables: HandoffTablePublisher, logger: Logger,
        sharedLog: (log: any SharedEventLog, start: SharedLogStart)? = nil, resuming: UpgradeState? = nil
    ) {
        self.sharedLog = sharedLog?.log
        metrics = settings.metrics ?? .unexported(shardCount: settings.shardCount)
        if resuming != nil { metrics.upgrades.increment() }
        self.eventLoop = eventLoop
        self.settings = settings
        self.logger = logger
        self.tables = tables
        children = ChildProcesses(eventLoop: eventLoop, logger: logger)
        shards = (0..<settings.shardCount).map { ShardMachine(shard: $0, backoff: settings.restartBackoff) }
        restarts = Array(repeating: 0, count: settings.shardCount)
        generations = Array(repeating: 0, count: settings.shardCount)
        history = EventHistory(
            capacity: settings.historySize, maximumAge: settings.historyTTL.wholeMilliseconds, maximumBytes: settings.historyBytes)
        subscriptions = SubscriptionLedger(shardCount: settings.shardCount)
        life = resuming.map { ProcessLife(continuing: $0) } ?? ProcessLife()
        if let resuming {
            history.restore(
                evictedThrough: resuming.history.evictedThrough, latestSequence: resuming.history.latestSequence,
                events: resuming.history.events.lazy.compactMap(\.command))
            for record in resuming.topics { subscriptions.restore(UserTopics(userID: record.user, topics: record.topics)) }
            for (shard, record) in resuming.shards.enumerated() where shard < settings.shardCount {
                restarts[shard] = record.restarts
                generations[shard] = record.generation
            }
            if let position = resuming.sharedLog {
                logCursor = SharedLogCursor(event: position.eventCursor, change: position.changeCursor)
            }
        } else if let logStart = sharedLog?.start {
            history.restore(evictedThrough: logStart.evictedThrough, latestSequence: logStart.cursor, events: logStart.events)
            for topics in logStart.userTopics { subscriptions.restore(topics) }
            logCursor = logStart.logCursor
        }
        stats = StatsLedger(shardCount: settings.shardCount)
        serviceManager = ServiceManagerLink(logger: logger)
        if resuming != nil { serviceManager.continuesAfterUpgrade() }
        reloads = ReloadQueue()
    }

    var bound: NIOLoopBound<ControlPlane> { NIOLoopBound(self, eventLoop: eventLoop) }

    // MARK: Running

    /// Starts every shard's worker (or, after an in-place upgrade, takes over those its previous program ran),
    /// and the plane's timers.
    func start(resuming: UpgradeState? = nil) -> EventLoopFuture<Void> {
        eventLoop.preconditionInEventLoop()
        return children.start().map { [bound] in
            let plane = bound.value
            plane.startTimers()
            for shard in plane.shards.indices {
                if let record = resuming?.shards[shard], let worker = record.worker {
                    plane.adopt(worker, shard: shard, failures: record.failures)
                } else {
                    plane.apply(plane.shards[shard].start(now: .now), shard: shard)
                }
            }
        }
    }

    private func startTimers() {
        let bound = self.bound
        trimmer.start(on: eventLoop)
        let interval = settings.liveness.interval
        eventLoop.scheduleRepeatedTask(initialDelay: TimeAmount(interval), delay: TimeAmount(interval)) { task in
            let plane = bound.value
            guard !plane.shuttingDown else { return task.cancel() }
            plane.checkLiveness()
        }
        serviceManager.startWatchdog(self)
    }

    /// Tells every worker to stop, kills those that have not within `shutdownGrace`; succeeds once all are gone.
    func shutdown() -> EventLoopFuture<Void> {
        eventLoop.preconditionInEventLoop()
        if let stopped { return stopped.futureResult }
        let promise = eventLoop.makePromise(of: Void.self)
        stopped = promise
        shuttingDown = true
        serviceManager.stopping()
        reloads.abandon(logger: logger)
        logger.info("stopping workers", metadata: ["event": "shutdown-begin"])
        for shard in shards.indices { apply(shards[shard].shutdownAsked(), shard: shard) }
        finishShutdownIfDone()
        return promise.futureResult
    }

    private func finishShutdownIfDone() {
        guard let stopped, shards.allSatisfy({ $0.state.name == .stopped }) else { return }
        logger.info("all workers stopped", metadata: ["event": "shutdown-done"])
        stopped.succeed()
    }

    // MARK: Applying transitions

    /// Performs what a shard's transition asks for and logs it; publishes the hand-off table if it changed.
    func apply(_ outcome: ShardMachine<WorkerHandle>.Outcome, shard: Int, metadata: Logger.Metadata = [:]) {
        eventLoop.preconditionInEventLoop()
        switch outcome {
        case .ignored(let reason):
            logger.debug("shard event ignored", metadata: ["worker": "\(shard)", "reason": "\(reason)"])
        case .moved(let transition):
            var metadata = metadata
            metadata["worker"] = "\(shard)"
            metadata["state"] = "\(transition.to.rawValue)"
            if transition.event == .workerStarted || transition.event == .workerExited { stats.reset(shard: shard) }
            if transition.event == .workerExited, !shuttingDown { restarts[shard] += 1 }
            var next: [ShardMachine<WorkerHandle>.Outcome] = []
            for action in transition.actions { perform(action, shard: shard, metadata: &metadata, next: &next) }
            ShardEventLog.log(transition, shuttingDown: shuttingDown, metadata: metadata, logger: logger)
            publishTableIfChanged()
            serviceManager.shardsChanged(self)
            serviceManager.workerAnswered(self)
            if transition.from == .replacing, transition.to != .replacing, transition.to != .stopping {
                reloads.shardReplaced(shard, plane: self)
            }
            if shuttingDown { finishShutdownIfDone() }
            // Events the actions caused (a spawn's outcome), in this turn of the loop: no other event comes between.
            for outcome in next { apply(outcome, shard: shard) }
        }
    }

    private func perform(
        _ action: ShardMachine<WorkerHandle>.Action, shard: Int, metadata: inout Logger.Metadata,
        next: inout [ShardMachine<WorkerHandle>.Outcome]
    ) {
        switch action {
        case .spawn:
            next.append(spawnWorker(shard: shard))
        case .scheduleSpawn(let due):
            let delay = max(.zero, ContinuousClock.now.duration(to: due))
            metadata["restart-in"] = "\(delay)"
            let bound = self.bound
            eventLoop.scheduleTask(in: TimeAmount(delay)) {
                let plane = bound.value
                plane.apply(plane.shards[shard].restartDue(now: .now), shard: shard)
            }
        case .replayHistory(let worker):
            metadata["pid"] = "\(worker.pid)"
            metadata["history"] = "\(replayHistory(to: worker))"
        case .beginMigration(let retiring, let successor):
            metadata["retiring-pid"] = "\(retiring.pid)"
            metadata["pid"] = "\(successor.pid)"
            if let from = retiring.link, let to = successor.link {
                MigrationForwarder.start(from: from, to: to, shard: shard, logger: logger)
            }
            retiring.control?.writeAndFlush(ControlMessage.migrate, promise: nil)
            let (bound, generation) = (self.bound, retiring.generation)
            eventLoop.scheduleTask(in: TimeAmount(settings.migrationPatience)) {
                let plane = bound.value
                plane.apply(plane.shards[shard].migrationTimedOut(generation: generation), shard: shard)
            }
        case .stop(let worker):
            stop(worker)
        case .release(let worker):
            metadata["pid"] = "\(worker.pid)"
            metadata["uptime"] = "\(worker.uptime)"
            worker.release()
        }
    }

    /// Tells the worker to stop, and kills it if it has not exited in time.
    private func stop(_ worker: WorkerHandle) {
        if let control = worker.control {
            control.writeAndFlush(ControlMessage.shutdown, promise: nil)
        } else {
            signal(worker, SIGTERM)  // it never connected: it cannot be asked
        }
        let patience = shuttingDown ? settings.shutdownGrace : settings.retiringExitPatience
        let (bound, loopBoundWorker) = (self.bound, NIOLoopBound(worker, eventLoop: eventLoop))
        eventLoop.scheduleTask(in: TimeAmount(patience)) {
            let worker = loopBoundWorker.value
            guard !worker.released else { return }
            bound.value.logger.warning(
                "worker did not stop in time; killing it", metadata: ["worker": "\(worker.shard)", "pid": "\(worker.pid)"])
            bound.value.signal(worker, SIGKILL)
        }
    }

    /// Sends `signal` to a worker that has not been reaped (so its pid is still its own).
    func signal(_ worker: WorkerHandle, _ signal: CInt) {
        guard !worker.released else { return }
        do {
            try Syscall.kill(worker.pid, signal)
        } catch {
            logger.error("cannot signal a worker", metadata: ["pid": "\(worker.pid)", "signal": "\(signal)", "error": "\(error)"])
        }
    }

    /// The hand-off table as the shards are now, published when a link came or went.
    private func publishTableIfChanged() {
        let serving = shards.map(\.state.serving)
        let links = serving.map { $0?.link }
        let batchLimits = serving.map { $0?.handoffBatchLimit ?? 1 }
        if let lastTable, lastTable.links.elementsEqual(links, by: ===), lastTable.batchLimits == batchLimits { return }
        let table = HandoffTable(links: links, batchLimits: batchLimits)
        lastTable = table
        tables.publish(table)
    }

    // MARK: The shared log

    func sharedLogStatusChanged(_ status: SharedLogStatus) {
        eventLoop.preconditionInEventLoop()
        let wasReachable = logStatus?.reachable ?? true
        logStatus = status
        if wasReachable != status.reachable { serviceManager.shardsChanged(self) }
    }

    // MARK: Lookups

    /// The shard's worker with this generation, if it is still one of the shard's.
    func worker(shard: Int, generation: Int) -> WorkerHandle? {
        shards[shard].state.workers.first { $0.generation == generation }
    }

    /// The shard of a user's streams and topics.
    func shard(of userID: String) -> Int { ShardFunction.shard(for: userID, shardCount: settings.shardCount) }

    func lastGeneration(shard: Int) -> Int { generations[shard] }

    func nextGeneration(shard: Int) -> Int {
        generations[shard] += 1
        return generations[shard]
    }
}
