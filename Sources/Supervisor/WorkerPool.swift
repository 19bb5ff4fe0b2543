import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Shared
import Synchronization
import SystemPackage

/// The worker processes, one per shard: starts them, restarts the ones that die (with a back-off),
/// hands them connections, routes publishes to them and keeps the stats they report.
final class WorkerPool: Service, Sendable {
    struct Settings: Sendable {
        var shardCount: Int
        var workerPath: String
        /// Arguments every worker gets besides its own shard and descriptors.
        var workerArguments: [String]
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
    }

    enum WorkerStatus: String, Sendable {
        case starting, up, down
    }

    /// One shard's worker as it is now. `generation` tells a restarted worker's events from its predecessor's.
    struct Slot: Sendable {
        var shard: Int
        var generation = 0
        var status = WorkerStatus.down
        var pid: pid_t?
        var control: (any Channel)?
        /// The supervisor's end of the link that carries connections.
        var handoff: HandoffLink?
        var startedAt: ContinuousClock.Instant?
        var restarts = 0
        var consecutiveFailures = 0
        /// When the worker last showed its event loop runs: its start, then each `.pong`. Nil once it was
        /// killed for not answering (until it is reaped).
        var lastAnswer: ContinuousClock.Instant?
        /// The worker a reload is replacing, while it passes its streams on (see `WorkerReload.swift`).
        var retiring: Retiring?
        /// The last event sequence written to the worker (live, or from the history as it started or caught up).
        var sentThrough: UInt64 = 0
        /// Its control channel holds more than the backlog bound: publishes wait in the history until it drains.
        var lagging = false
    }

    /// A worker being replaced by a reload: no new connections or publishes reach it.
    struct Retiring: Sendable {
        var generation: Int
        var pid: pid_t
        var control: any Channel
        var handoff: HandoffLink
        var passedEverything = false
    }

    struct State: Sendable {
        var slots: [Slot]
        var shuttingDown = false
        /// Every event published in this epoch, within bounds: a restarted worker is given its share.
        var history: EventHistory
        /// Every user's topics: a restarted worker is given its shard's, like the history.
        var subscriptions: SubscriptionLedger
        /// Events were published since the heap was last trimmed.
        var publishedSinceTrim = false
        var stats: StatsLedger
    }

    enum HandoffResult: Sendable {
        case sent
        /// The worker's queue is full for now.
        case busy
        /// The worker is down or starting.
        case unavailable
    }

    /// How a hand-off that found its worker busy or starting is retried: pauses growing from 1 ms to 50 ms,
    /// until a deadline. One policy for the accept path (which waits asynchronously, off the accept thread)
    /// and for reload's migration (which blocks its own thread).
    struct HandoffRetry {
        private let deadline: ContinuousClock.Instant
        private var pause = Duration.milliseconds(1)

        init(for wait: Duration) { deadline = .now + wait }

        /// The pause before the next attempt; nil once the deadline has passed.
        mutating func nextPause() -> Duration? {
            guard ContinuousClock.now < deadline else { return nil }
            defer { pause = min(pause * 2, .milliseconds(50)) }
            return pause
        }
    }

    /// The descriptor number a worker finds its control socket at (its hand-off link's: see `HandoffLink`).
    static let workerControlDescriptor: CInt = 3

    let settings: Settings
    private let group: any EventLoopGroup
    let logger: Logger
    let state: Mutex<State>

    init(settings: Settings, group: any EventLoopGroup, logger: Logger) {
        self.settings = settings
        self.group = group
        self.logger = logger
        let ttl = settings.historyTTL.components
        state = Mutex(
            State(
                slots: (0..<settings.shardCount).map { Slot(shard: $0) },
                history: EventHistory(
                    capacity: settings.historySize,
                    maximumAge: ttl.seconds * 1000 + ttl.attoseconds / 1_000_000_000_000_000, maximumBytes: settings.historyBytes),
                subscriptions: SubscriptionLedger(shardCount: settings.shardCount),
                stats: StatsLedger(shardCount: settings.shardCount)))
    }

    var shardCount: Int { settings.shardCount }

    func run() async throws {
        for shard in 0..<settings.shardCount { start(shard: shard) }
        // Publishes allocate and free large buffers (bodies, frames, evicted history entries) that glibc keeps in
        // its heap after a burst; the workers trim theirs the same way.
        let trim = group.next().scheduleRepeatedTask(initialDelay: .seconds(2), delay: .seconds(2)) { _ in
            if self.state.withLock({ state in defer { state.publishedSinceTrim = false }; return state.publishedSinceTrim }) {
                Syscall.releaseFreeMemory()
            }
        }
        try? await gracefulShutdown()
        trim.cancel()
        await stopAll()
    }

    // MARK: Lifecycle of one worker

    func start(shard: Int) {
        let (generation, shuttingDown) = state.withLock { state in
            state.slots[shard].generation += 1
            return (state.slots[shard].generation, state.shuttingDown)
        }
        guard !shuttingDown else { return }
        var log = logger
        log[metadataKey: "worker"] = "\(shard)"
        do {
            let (controlOurs, controlTheirs) = try Syscall.socketPair(type: .stream)
            let handoff: (ours: HandoffLink, theirs: (socket: CInt, doorbell: CInt))
            do {
                handoff = try HandoffLink.make()
            } catch {
                Syscall.close(controlOurs)
                Syscall.close(controlTheirs)
                throw error
            }
            defer {
                Syscall.close(controlTheirs)
                Syscall.close(handoff.theirs.socket)
                Syscall.close(handoff.theirs.doorbell)
            }
            let pid: pid_t
            do {
                pid = try ProcessSpawn.spawn(
                    path: settings.workerPath,
                    arguments: [
                        "--shard", String(shard), "--control-fd", String(Self.workerControlDescriptor),
                        "--handoff-fd", String(HandoffLink.workerSocketDescriptor),
                        "--doorbell-fd", String(HandoffLink.workerDoorbellDescriptor), "--epoch", String(settings.epoch),
                    ] + settings.workerArguments,
                    descriptors: [
                        (controlTheirs, Self.workerControlDescriptor), (handoff.theirs.socket, HandoffLink.workerSocketDescriptor),
                        (handoff.theirs.doorbell, HandoffLink.workerDoorbellDescriptor),
                    ],
                    environment: ProcessSpawn.currentEnvironment
                )
            } catch {
                Syscall.close(controlOurs)
                handoff.ours.close()
                throw error
            }
            state.withLock { state in
                state.slots[shard].status = .starting
                state.slots[shard].pid = pid
                state.slots[shard].handoff = handoff.ours
                state.slots[shard].startedAt = .now
                state.slots[shard].lastAnswer = .now
                state.slots[shard].lagging = false
                state.slots[shard].sentThrough = 0
                state.stats.reset(shard: shard)
            }
            log.info("worker started", metadata: ["pid": "\(pid)", "event": "worker-started"])
            watchExit(shard: shard, generation: generation, pid: pid)
            connectControl(fd: controlOurs, shard: shard, generation: generation, logger: log)
        } catch {
            log.error("cannot start worker", metadata: ["error": "\(error)", "path": "\(settings.workerPath)"])
            scheduleRestart(shard: shard, generation: generation)
        }
    }

    private func connectControl(fd: CInt, shard: Int, generation: Int, logger: Logger) {
        let backlog = ChannelOptions.Types.WriteBufferWaterMark(
            low: settings.workerBacklogBytes / 2, high: settings.workerBacklogBytes)
        ControlChannel.adopt(fd, group: group, backlog: backlog) {
            WorkerControlHandler(pool: self, shard: shard, generation: generation, logger: logger)
        }
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    let stale = self.state.withLock { state in
                        guard state.slots[shard].generation == generation else { return true }
                        state.slots[shard].control = channel
                        return false
                    }
                    if stale { channel.close(promise: nil) }
                case .failure(let error):
                    logger.error("cannot adopt the worker's control socket", metadata: ["error": "\(error)"])
                    self.kill(shard: shard, generation: generation)
                }
            }
    }

    /// Reaps the worker when it exits, on a thread of its own (`waitpid` blocks).
    private func watchExit(shard: Int, generation: Int, pid: pid_t) {
        let thread = Thread {
            let status = (try? Syscall.waitForExit(pid)) ?? 0
            self.workerExited(shard: shard, generation: generation, pid: pid, waitStatus: status)
        }
        thread.name = "sse-reap-\(shard)"
        thread.start()
    }

    private func workerExited(shard: Int, generation: Int, pid: pid_t, waitStatus: CInt) {
        if retiredWorkerExited(shard: shard, generation: generation, pid: pid) { return }
        let (control, handoff, shuttingDown, ranFor) = state.withLock { state in
            var slot = state.slots[shard]
            let taken = (slot.control, slot.handoff, state.shuttingDown, slot.startedAt.map { $0.duration(to: .now) })
            slot.status = .down
            slot.pid = nil
            slot.control = nil
            slot.handoff = nil
            state.slots[shard] = slot
            state.stats.reset(shard: shard)
            return taken
        }
        control?.close(promise: nil)
        handoff?.close()
        let signal = waitStatus & 0x7f
        let how = signal == 0 ? "exit code \((waitStatus >> 8) & 0xff)" : "signal \(signal)"
        var metadata: Logger.Metadata = [
            "worker": "\(shard)", "pid": "\(pid)", "status": "\(how)", "event": "worker-exited",
        ]
        if let ranFor { metadata["uptime"] = "\(ranFor)" }
        if shuttingDown {
            logger.info("worker exited", metadata: metadata)
            return
        }
        logger.error("worker exited unexpectedly; restarting it", metadata: metadata)
        state.withLock { state in
            // A worker that ran a while before dying starts over with the shortest back-off.
            if let ranFor, ranFor > .seconds(30) { state.slots[shard].consecutiveFailures = 0 }
            state.slots[shard].consecutiveFailures += 1
            state.slots[shard].restarts += 1
        }
        scheduleRestart(shard: shard, generation: generation)
    }

    private func scheduleRestart(shard: Int, generation: Int) {
        let failures = state.withLock { $0.slots[shard].consecutiveFailures }
        let delay = Self.backoff(afterFailures: failures)
        logger.info("worker restart scheduled", metadata: ["worker": "\(shard)", "delay": "\(delay)"])
        group.next().scheduleTask(in: .nanoseconds(Int64(delay.components.seconds) * 1_000_000_000 + delay.components.attoseconds / 1_000_000_000)) {
            let current = self.state.withLock { $0.slots[shard].generation }
            if current == generation { self.start(shard: shard) }
        }
    }

    /// 100 ms, doubling with each failure in a row, at most 10 s.
    static func backoff(afterFailures failures: Int) -> Duration {
        guard failures > 1 else { return .milliseconds(100) }
        return min(.milliseconds(100) * (1 << min(failures - 1, 7)), .seconds(10))
    }

    private func kill(shard: Int, generation: Int) {
        let pid = state.withLock { state in
            state.slots[shard].generation == generation ? state.slots[shard].pid : nil
        }
        if let pid { try? Syscall.kill(pid, SIGKILL) }
    }

    // MARK: Events from a worker's control channel

    /// The worker said hello: give it its users' topics and its share of the history, then let connections and
    /// publishes reach it. All under the lock, so every live publish is written after the history it follows.
    func workerReady(shard: Int, generation: Int, hello: WorkerHello, channel: any Channel) {
        let replayed: Int? = state.withLock { state in
            guard state.slots[shard].generation == generation, state.slots[shard].status == .starting else { return nil }
            for restored in state.subscriptions.restoreMessages(shard: shard) {
                channel.write(ControlMessage.restoreTopics(restored), promise: nil)
            }
            state.history.trim(now: WallClock.milliseconds())
            let share = state.history.entries(after: 0).filter { isOnShard($0.target, shard) }
            for command in share { channel.write(ControlMessage.historyEntry(command), promise: nil) }
            channel.writeAndFlush(
                ControlMessage.historyEnd(
                    HistoryBounds(evictedThrough: state.history.evictedThrough, latestSequence: state.history.latestSequence)),
                promise: nil)
            state.slots[shard].status = .up
            state.slots[shard].sentThrough = state.history.latestSequence
            // A long replay may leave more queued than the backlog bound: live events wait until it drains.
            state.slots[shard].lagging = !channel.isWritable
            return share.count
        }
        if let replayed {
            logger.info(
                "worker ready", metadata: ["worker": "\(shard)", "pid": "\(hello.pid)", "event": "worker-ready", "history": "\(replayed)"])
        }
    }

    /// Whether a worker of `shard` receives events for `target`.
    private func isOnShard(_ target: PublishTarget, _ shard: Int) -> Bool {
        switch target {
        case .everyone, .topic: true
        case .user(let userID): ShardFunction.shard(for: userID, shardCount: settings.shardCount) == shard
        }
    }


    func updateStats(shard: Int, generation: Int, report: StatsReport) {
        state.withLock { state in
            guard state.slots[shard].generation == generation else { return }
            state.stats.apply(report, shard: shard)
        }
    }

    /// A worker changed a user's topics. Kept whichever worker of the shard says so; a change from a worker a
    /// reload is retiring (a request it was still serving) also goes to its successor, which may have been given
    /// the user's topics already.
    func subscriptionsChanged(_ message: ControlMessage, shard: Int, generation: Int) {
        state.withLock { state in
            let fromRetiring = state.slots[shard].retiring?.generation == generation
            guard state.slots[shard].generation == generation || fromRetiring else { return }
            var forward: ControlMessage?
            switch message {
            case .subscribed(let change):
                state.subscriptions.subscribed(change, shard: shard)
                forward = .restoreTopics(change)
            case .unsubscribed(let change):
                state.subscriptions.unsubscribed(change, shard: shard)
                forward = .dropTopics(change)
            case .forgotten(let userID):
                // A retiring worker's grace periods are not its successor's: that one forgets on its own clock.
                guard !fromRetiring else { return }
                state.subscriptions.forgotten(userID, shard: shard)
            default:
                preconditionFailure("not a subscription change: \(message)")
            }
            if fromRetiring, let forward, let successor = state.slots[shard].control {
                successor.writeAndFlush(forward, promise: nil)
            }
        }
    }

    /// Each shard's worker as it is, with the counts of its last reports: no topic is walked or copied.
    var workers: [WorkerSummary] {
        state.withLock { state in
            state.slots.map { slot in
                WorkerSummary(
                    slot: slot, clients: state.stats.clientsByShard[slot.shard], topics: state.stats.topicCount(shard: slot.shard))
            }
        }
    }

    /// Every worker's streams and topics, summed.
    var totals: (clients: Int, topics: Int) { state.withLock { ($0.stats.totalClients, $0.stats.topics.count) } }

    /// Connected subscribers per topic, over every worker (for the publishers' stats: costs what it lists).
    var topicCounts: [String: Int] { state.withLock { $0.stats.topics } }

    /// The control channel closed: a worker without one is useless, so make sure it is gone (it is restarted when reaped).
    /// While shutting down, workers close it themselves on their way out and get `shutdownGrace` to finish.
    func controlClosed(shard: Int, generation: Int) {
        guard !state.withLock({ $0.shuttingDown }) else { return }
        kill(shard: shard, generation: generation)
    }

    // MARK: Serving

    /// Passes `fd` with an encoded `Handoff` to `shard`'s worker. The caller still owns `fd` and closes it after `.sent`.
    func handOff(_ fd: CInt, _ payload: [UInt8], shard: Int) -> HandoffResult {
        // Under the lock, so that the socket cannot be closed (and its number reused) while in use.
        return state.withLock { state in
            let slot = state.slots[shard]
            guard slot.status == .up, let link = slot.handoff else { return .unavailable }
            do {
                try link.send(descriptor: fd, payload: payload)
                return .sent
            } catch .wouldBlock {
                return .busy
            } catch {
                return .unavailable
            }
        }
    }

    /// Gives the event the next id, records it in the history, and sends it to every worker that has a
    /// recipient of it (a worker that is down gets it from the history when it is back, one that lags when it
    /// has drained). Under the lock, and on the one event loop that owns every control channel, so every worker
    /// receives events in id order.
    @discardableResult
    func publish(target: PublishTarget, event: String, data: String) -> EventID {
        state.withLock { state in
            let command = PublishCommand(
                target: target, event: event, data: data, sequence: state.history.latestSequence + 1,
                publishedAt: WallClock.milliseconds())
            state.history.append(command)
            state.publishedSinceTrim = true
            for shard in state.slots.indices where state.slots[shard].status == .up && isOnShard(target, shard) {
                guard !state.slots[shard].lagging, let control = state.slots[shard].control else { continue }
                control.writeAndFlush(ControlMessage.publish(command), promise: nil)
                state.slots[shard].sentThrough = command.sequence
                if !control.isWritable {
                    state.slots[shard].lagging = true
                    logger.warning(
                        "worker is lagging behind publishes; holding them in the history until it drains",
                        metadata: ["worker": "\(shard)", "event": "worker-lagging", "sequence": "\(command.sequence)"])
                }
            }
            return EventID(epoch: settings.epoch, sequence: command.sequence)
        }
    }

    /// A lagging worker's control channel drained below half the bound: it is reading (so it is alive), and gets
    /// what it missed from the history, in order, until the bound is reached again or it has caught up. If the
    /// history no longer holds everything it missed, it is restarted: its clients reconnect and resume, and a
    /// client whose events are gone is told so (`reset`). Nothing is lost silently.
    func workerDrained(shard: Int, generation: Int, channel: any Channel) {
        let fellBehind: pid_t? = state.withLock { state in
            guard state.slots[shard].generation == generation, state.slots[shard].status == .up, state.slots[shard].lagging
            else { return nil }
            state.slots[shard].lastAnswer = .now
            let sentThrough = state.slots[shard].sentThrough
            if state.history.evictedThrough > sentThrough {
                state.slots[shard].lastAnswer = nil  // like a hung worker: killed, and restarted when reaped
                return state.slots[shard].pid
            }
            for command in state.history.entries(after: sentThrough) where isOnShard(command.target, shard) {
                channel.write(ControlMessage.publish(command), promise: nil)
                state.slots[shard].sentThrough = command.sequence
                if !channel.isWritable { break }
            }
            channel.flush()
            if channel.isWritable {
                state.slots[shard].lagging = false
                state.slots[shard].sentThrough = state.history.latestSequence
                logger.info("worker caught up", metadata: ["worker": "\(shard)", "event": "worker-caught-up"])
            }
            return nil
        }
        if let pid = fellBehind {
            logger.error(
                "worker fell further behind than the history reaches; restarting it (its clients resume or get reset)",
                metadata: ["worker": "\(shard)", "pid": "\(pid)", "event": "worker-fell-behind"])
            try? Syscall.kill(pid, SIGKILL)
        }
    }

    var slots: [Slot] { state.withLock { $0.slots } }

    // MARK: Liveness (driven by `WorkerLiveness`)

    /// Sends `.ping(nonce)` to every worker that has a control channel.
    func pingWorkers(nonce: UInt64) {
        let channels = state.withLock { $0.slots.compactMap(\.control) }
        for channel in channels { channel.writeAndFlush(ControlMessage.ping(nonce), promise: nil) }
    }

    func workerAnswered(shard: Int, generation: Int) {
        state.withLock { state in
            guard state.slots[shard].generation == generation, state.slots[shard].lastAnswer != nil else { return }
            state.slots[shard].lastAnswer = .now
        }
    }

    /// Whether every running worker has answered within `limit` (a worker killed for silence counts as
    /// silent until it is reaped; one that is down and waiting for its restart does not).
    func everyWorkerAnswered(within limit: Duration) -> Bool {
        let now = ContinuousClock.now
        return state.withLock { state in
            state.slots.allSatisfy { slot in
                slot.pid == nil || slot.lastAnswer.map { now - $0 <= limit } == true
            }
        }
    }

    /// SIGKILLs every worker silent for longer than `limit` (hung: stopped, deadlocked, spinning); it is
    /// then reaped and restarted like any worker that dies. Returns the shards killed.
    @discardableResult
    func killWorkers(silentFor limit: Duration) -> [Int] {
        let now = ContinuousClock.now
        let hung = state.withLock { state in
            state.slots.indices.compactMap { index -> (Int, pid_t, Duration)? in
                guard let pid = state.slots[index].pid, let last = state.slots[index].lastAnswer, now - last > limit else {
                    return nil
                }
                state.slots[index].lastAnswer = nil
                return (index, pid, now - last)
            }
        }
        for (shard, pid, silence) in hung {
            logger.error(
                "worker stopped answering its liveness pings; killing it",
                metadata: ["worker": "\(shard)", "pid": "\(pid)", "silent": "\(silence)", "event": "worker-hung"])
            try? Syscall.kill(pid, SIGKILL)
        }
        return hung.map(\.0)
    }

    // MARK: Shutdown

    private func stopAll() async {
        let channels = state.withLock { state in
            state.shuttingDown = true
            return state.slots.compactMap(\.control)
        }
        logger.info("stopping workers", metadata: ["event": "shutdown-begin"])
        for channel in channels {
            channel.writeAndFlush(ControlMessage.shutdown, promise: nil)
        }
        let deadline = ContinuousClock.now + settings.shutdownGrace
        while ContinuousClock.now < deadline, state.withLock({ $0.slots.contains { $0.pid != nil } }) {
            try? await Task.sleep(for: .milliseconds(20))
        }
        let stragglers = state.withLock { $0.slots.compactMap(\.pid) }
        for pid in stragglers {
            logger.warning("worker did not stop in time; killing it", metadata: ["pid": "\(pid)"])
            try? Syscall.kill(pid, SIGKILL)
        }
        while state.withLock({ $0.slots.contains { $0.pid != nil } }) {
            try? await Task.sleep(for: .milliseconds(20))
        }
        logger.info("all workers stopped", metadata: ["event": "shutdown-done"])
    }
}

/// One shard's worker as health reports it.
struct WorkerSummary: Sendable {
    var slot: WorkerPool.Slot
    var clients: Int
    var topics: Int
}

/// The supervisor's end of one worker's control channel.
final class WorkerControlHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ControlMessage

    let pool: WorkerPool
    let shard: Int
    let generation: Int
    let logger: Logger

    init(pool: WorkerPool, shard: Int, generation: Int, logger: Logger) {
        self.pool = pool
        self.shard = shard
        self.generation = generation
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let message = Self.unwrapInboundIn(data)
        switch message {
        case .hello(let hello):
            pool.workerReady(shard: shard, generation: generation, hello: hello, channel: context.channel)
        case .stats(let report):
            pool.updateStats(shard: shard, generation: generation, report: report)
        case .pong:
            pool.workerAnswered(shard: shard, generation: generation)
        case .subscribed, .unsubscribed, .forgotten:
            pool.subscriptionsChanged(message, shard: shard, generation: generation)
        case .migrationDone:
            pool.retiringWorkerPassedEverything(shard: shard, generation: generation)
        case .publish, .historyEntry, .historyEnd, .restoreTopics, .dropTopics, .ping, .shutdown, .migrate:
            logger.error("worker sent a supervisor-only message; closing its control channel")
            context.close(promise: nil)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { pool.workerDrained(shard: shard, generation: generation, channel: context.channel) }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        // Later, not now: this can run inside a write the pool makes while holding its lock.
        let (pool, shard, generation) = (pool, shard, generation)
        context.eventLoop.execute { pool.controlClosed(shard: shard, generation: generation) }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.error("control channel failed; closing it", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }
}
