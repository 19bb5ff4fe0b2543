import Logging
import NIOCore
import Shared
import SystemPackage

/// Passes connections to their shard's worker, on the accept thread, from the current `HandoffTable`.
///
/// Connections are queued per shard as the accept loop routes them and sent once per turn of the loop (`flush`), as
/// many to a message as the worker reads (`HandoffBatch`), so a burst costs each worker one `sendmsg`, one `recvmsg`
/// and one wake-up per batch rather than per connection; a shard with a full batch is sent it at once.
/// A connection whose worker is down, starting or has a full queue waits here, in order, until the table lists the
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
        /// When the connection was accepted: the hand-off time and the deadline are measured from it.
        var acceptedAt: ContinuousClock.Instant
    }

    private struct Queued {
        var job: Job
        var deadline: ContinuousClock.Instant
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
    private var waiting: [CircularBuffer<Queued>]
    private var waitingCount = 0
    /// Shards queued to since the last `flush`, each once.
    private var unsent: [Int] = []
    private var isUnsent: [Bool]
    /// Links whose socket is watched for room, by shard: only while jobs wait for it (each worker's read would
    /// otherwise wake this thread).
    private var watchedForRoom: [HandoffLink?]
    /// Links sent to since their worker was last rung (`flush`), by shard; at most a few.
    private var unrung: [HandoffLink] = []
    /// The message being built, reused.
    private var batch = HandoffBatch()

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
        isUnsent = Array(repeating: false, count: table.links.count)
        watchedForRoom = Array(repeating: nil, count: table.links.count)
    }

    // MARK: Passing connections

    /// Queues the connection behind those of its shard; it goes out with the next `flush`, or now if that fills
    /// a message to a worker that can take it.
    func dispatch(_ job: Job) {
        let shard = job.shard
        waiting[shard].append(Queued(job: job, deadline: job.acceptedAt + connectionWait))
        waitingCount += 1
        if waiting[shard].count >= table.batchLimits[shard], watchedForRoom[shard] == nil {
            sendWaiting(shard: shard)
        } else if !isUnsent[shard] {
            isUnsent[shard] = true
            unsent.append(shard)
        }
    }

    /// Sends what waits for `shard`, in order and as many to a message as its worker reads, until the worker's
    /// queue is full or it has no worker.
    private func sendWaiting(shard: Int) {
        guard let link = table.links[shard] else { return }  // down or starting: the next table brings it
        let limit = table.batchLimits[shard]
        while !waiting[shard].isEmpty {
            batch.removeAll()
            for queued in waiting[shard] {
                guard batch.count < limit, batch.append(descriptor: queued.job.fd, payload: queued.job.payload) else { break }
            }
            do {
                try link.sendWithoutRinging(batch)
            } catch .wouldBlock {
                watchForRoom(shard: shard)
                return
            } catch {
                // The worker is gone (EPIPE, ECONNREFUSED): the control plane publishes a table without it once reaped.
                return
            }
            if !unrung.contains(where: { $0 === link }) { unrung.append(link) }
            let now = ContinuousClock.now
            for _ in 0..<batch.count {
                let sent = waiting[shard].removeFirst().job
                Syscall.close(sent.fd)
                metrics.handoffDuration.recordNanoseconds((now - sent.acceptedAt).wholeNanoseconds)
            }
            waitingCount -= batch.count
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

    /// Sends what each shard queued since the last call, then wakes every worker sent a connection. The accept loop
    /// calls it before each wait, so no connection sits unsent or unannounced while the thread sleeps, and a burst
    /// accepted in one turn costs each worker a message per batch and one wake-up.
    func flush() {
        for shard in unsent {
            isUnsent[shard] = false
            if watchedForRoom[shard] == nil { sendWaiting(shard: shard) }  // else its room's event sends it
        }
        unsent.removeAll(keepingCapacity: true)
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
            while let queued = waiting[shard].first, queued.deadline <= now {
                let job = waiting[shard].removeFirst().job
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
        waiting.flatMap { $0.map { AcceptHandOver.Waiting(fd: $0.job.fd, shard: $0.job.shard, payload: $0.job.payload) } }
    }

    /// Closes every connection still waiting (the accept loop stops).
    func closeAll() {
        for shard in waiting.indices {
            for queued in waiting[shard] { Syscall.close(queued.job.fd) }
            waiting[shard].removeAll()
        }
        waitingCount = 0
        unsent.removeAll()
        isUnsent = Array(repeating: false, count: isUnsent.count)
    }
}
