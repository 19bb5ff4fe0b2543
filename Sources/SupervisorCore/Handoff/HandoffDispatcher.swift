import Logging
import NIOCore
import Shared
import SystemPackage

/// Passes connections to their shard's worker, on the accept thread, from the current `HandoffTable`; a
/// connection whose worker is down, starting or has a full queue waits here, in order, until the table lists the
/// shard's worker again or its queue has room (the link's socket turns writable), or until its deadline (then
/// `onUnavailable` answers it). Waits on events (epoll, the table's ring), never on a timer.
///
/// Confined to the accept thread, like the rest of `AcceptReactor`'s state.
final class HandoffDispatcher {
    /// One connection on its way to a worker. The dispatcher owns `fd` until it is sent (then closed here) or
    /// given up on (then `onUnavailable` owns it).
    struct Job {
        var fd: CInt
        var payload: [UInt8]
        var shard: Int
        var handoff: Handoff
        /// When the connection was accepted: the hand-off time is measured from it.
        var acceptedAt: ContinuousClock.Instant
        var deadline = ContinuousClock.Instant.now
    }

    private enum SendResult {
        case sent, busy, unavailable
    }

    static let writableTokens: Range<UInt64> = (1 << 20)..<(1 << 21)

    private let epoll: Epoll
    private let tables: HandoffTablePublisher
    private let logger: Logger
    private let connectionWait: Duration
    private let metrics: HostMetrics
    private let onUnavailable: (CInt, Handoff) -> Void
    private var table: HandoffTable
    /// What waits for each shard's worker, in arrival order (so in deadline order: every one waits as long).
    private var waiting: [CircularBuffer<Job>]
    private var waitingCount = 0
    /// Links whose socket is watched for room, by shard: only while jobs wait for it (each worker's read would
    /// otherwise wake this thread).
    private var watchedForRoom: [HandoffLink?]
    /// Links sent to since their worker was last rung (`ringDoorbells`), by shard; at most a few.
    private var unrung: [HandoffLink] = []

    init(
        epoll: Epoll, tables: HandoffTablePublisher, connectionWait: Duration, metrics: HostMetrics, logger: Logger,
        onUnavailable: @escaping (CInt, Handoff) -> Void
    ) {
        self.epoll = epoll
        self.tables = tables
        self.logger = logger
        self.connectionWait = connectionWait
        self.metrics = metrics
        self.onUnavailable = onUnavailable
        table = tables.take()
        waiting = Array(repeating: CircularBuffer(), count: table.links.count)
        watchedForRoom = Array(repeating: nil, count: table.links.count)
    }

    // MARK: Passing connections

    /// Passes the connection now, or queues it behind those of its shard that wait already.
    func dispatch(_ job: Job) {
        var job = job
        if waiting[job.shard].isEmpty {
            switch send(job) {
            case .sent: return
            case .busy: watchForRoom(shard: job.shard)
            case .unavailable: break
            }
        }
        job.deadline = .now + connectionWait
        waiting[job.shard].append(job)
        waitingCount += 1
    }

    private func send(_ job: Job) -> SendResult {
        guard let link = table.links[job.shard] else { return .unavailable }
        do {
            try link.sendWithoutRinging(descriptor: job.fd, payload: job.payload)
            if !unrung.contains(where: { $0 === link }) { unrung.append(link) }
            Syscall.close(job.fd)
            metrics.handoffDuration.recordNanoseconds((ContinuousClock.now - job.acceptedAt).wholeNanoseconds)
            return .sent
        } catch .wouldBlock {
            return .busy
        } catch {
            // The worker is gone (EPIPE, ECONNREFUSED): the control plane publishes a table without it once reaped.
            return .unavailable
        }
    }

    /// Sends what waits for `shard`, in order, until the worker's queue is full or it has no worker.
    private func sendWaiting(shard: Int) {
        while let job = waiting[shard].first {
            switch send(job) {
            case .sent:
                waiting[shard].removeFirst()
                waitingCount -= 1
            case .busy:
                watchForRoom(shard: shard)
                return
            case .unavailable:
                return
            }
        }
        stopWatchingForRoom(shard: shard)
    }

    private func watchForRoom(shard: Int) {
        guard let link = table.links[shard], watchedForRoom[shard] !== link else { return }
        stopWatchingForRoom(shard: shard)
        do {
            // Edge-triggered: reported when room appears; adding it reports room that is there already.
            try epoll.add(link.socket, events: [.writable, .edgeTriggered], token: Self.writableTokens.lowerBound + UInt64(shard))
            watchedForRoom[shard] = link
        } catch {
            logger.error("cannot watch a worker's hand-off queue; its connections wait for the next change", metadata: ["error": "\(error)"])
        }
    }

    private func stopWatchingForRoom(shard: Int) {
        guard let link = watchedForRoom[shard] else { return }
        epoll.remove(link.socket)
        watchedForRoom[shard] = nil
    }

    /// Wakes every worker sent a connection since the last call. The accept loop calls it before each wait, so no
    /// connection sits unannounced while the thread sleeps, and a burst accepted in one turn rings each worker once.
    func ringDoorbells() {
        guard !unrung.isEmpty else { return }
        for link in unrung { link.ring() }
        unrung.removeAll(keepingCapacity: true)
    }

    // MARK: Events

    /// Reacts to a ready descriptor of the dispatcher's; false if `token` is not one.
    func handle(token: UInt64) -> Bool {
        guard Self.writableTokens.contains(token) else { return false }
        sendWaiting(shard: Int(token - Self.writableTokens.lowerBound))
        return true
    }

    /// The control plane published a new table: send what waits for shards that have a worker again.
    func tableChanged() {
        table = tables.take()
        for shard in table.links.indices {
            if watchedForRoom[shard] != nil, watchedForRoom[shard] !== table.links[shard] { stopWatchingForRoom(shard: shard) }
            if !waiting[shard].isEmpty { sendWaiting(shard: shard) }
        }
    }

    /// The earliest deadline of a waiting connection.
    var nextDeadline: ContinuousClock.Instant? {
        guard waitingCount > 0 else { return nil }
        var earliest: ContinuousClock.Instant?
        for queue in waiting {
            if let deadline = queue.first?.deadline, earliest.map({ deadline < $0 }) ?? true { earliest = deadline }
        }
        return earliest
    }

    /// Gives up on the connections whose deadline has passed: `onUnavailable` answers them.
    func expire(now: ContinuousClock.Instant) {
        guard waitingCount > 0 else { return }
        for shard in waiting.indices where !waiting[shard].isEmpty {
            while let job = waiting[shard].first, job.deadline <= now {
                waiting[shard].removeFirst()
                waitingCount -= 1
                logger.warning(
                    "no worker took the connection in time",
                    metadata: ["worker": "\(job.shard)", "user": "\(job.handoff.userID)", "event": "handoff-timed-out"])
                onUnavailable(job.fd, job.handoff)
            }
            if waiting[shard].isEmpty { stopWatchingForRoom(shard: shard) }
        }
    }

    /// The connections waiting for a worker, in order (an in-place upgrade carries them over).
    var waitingJobs: [AcceptHandOver.Waiting] {
        waiting.flatMap { $0.map { AcceptHandOver.Waiting(fd: $0.fd, shard: $0.shard, payload: $0.payload) } }
    }

    /// Closes every connection still waiting (the accept loop stops).
    func closeAll() {
        for shard in waiting.indices {
            for job in waiting[shard] { Syscall.close(job.fd) }
            waiting[shard].removeAll()
        }
        waitingCount = 0
    }
}
