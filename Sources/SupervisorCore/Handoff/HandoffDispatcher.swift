import Logging
import NIOCore
import Shared
import SystemPackage

/// Passes connections to their shard's worker, on the accept thread, from the current `HandoffTable`; a
/// connection whose worker is down, starting or has a full queue waits here, in order, until the table lists the
/// shard's worker again or its queue has room (the link's socket turns writable), or until its deadline (then
/// `onUnavailable` answers it). It also takes the streams a retiring worker passes back during a reload and passes
/// them to the shard's new worker the same way. Waits on events (epoll, the table's ring), never on a timer.
///
/// Confined to the accept thread, like the rest of `AcceptReactor`'s state.
final class HandoffDispatcher {
    /// One connection on its way to a worker. The dispatcher owns `fd` until it is sent (then closed here) or
    /// given up on.
    struct Job {
        enum Kind {
            /// A new connection (a stream or a topic request), answered by `onUnavailable` if no worker takes it.
            case connection(Handoff)
            /// A live stream a retiring worker passed back; closed if no worker takes it (its client resumes).
            case migrated(userID: String)
        }

        var fd: CInt
        var payload: [UInt8]
        var shard: Int
        var kind: Kind
        var deadline = ContinuousClock.Instant.now
    }

    private enum SendResult {
        case sent, busy, unavailable
    }

    /// A retiring worker's link, read until the worker closes its end.
    private struct Drain {
        var shard: Int
        var link: HandoffLink
        var received = 0
    }

    static let writableTokens: Range<UInt64> = (1 << 20)..<(1 << 21)
    static let drainTokens: Range<UInt64> = (1 << 21)..<(1 << 22)

    private let epoll: Epoll
    private let tables: HandoffTablePublisher
    private let logger: Logger
    private let connectionWait: Duration
    private let migratedWait: Duration
    private let onUnavailable: (CInt, Handoff, Int) -> Void
    private var table: HandoffTable
    /// Per shard, in arrival order (so in deadline order): migrated streams first, then new connections.
    private var waitingMigrated: [CircularBuffer<Job>]
    private var waitingConnections: [CircularBuffer<Job>]
    private var waitingCount = 0
    /// Links whose socket is watched for room, by shard: only while jobs wait for it (each worker's read would
    /// otherwise wake this thread).
    private var watchedForRoom: [HandoffLink?]
    private var drains: [UInt64: Drain] = [:]
    /// Retiring links read to their end whose worker the table still lists (until the control plane has reaped it):
    /// not read again.
    private var drained: Set<ObjectIdentifier> = []
    private var nextDrainToken = drainTokens.lowerBound
    private let receiveBuffers = DescriptorPassing.ReceiveBuffers()

    init(
        epoll: Epoll, tables: HandoffTablePublisher, connectionWait: Duration, migratedWait: Duration = .seconds(5),
        logger: Logger, onUnavailable: @escaping (CInt, Handoff, Int) -> Void
    ) {
        self.epoll = epoll
        self.tables = tables
        self.logger = logger
        self.connectionWait = connectionWait
        self.migratedWait = migratedWait
        self.onUnavailable = onUnavailable
        table = tables.take()
        waitingMigrated = Array(repeating: CircularBuffer(), count: table.links.count)
        waitingConnections = Array(repeating: CircularBuffer(), count: table.links.count)
        watchedForRoom = Array(repeating: nil, count: table.links.count)
    }

    // MARK: Passing connections

    /// Passes the connection now, or queues it behind those of its shard that wait already.
    func dispatch(_ job: Job) {
        var job = job
        if case .connection = job.kind, waitingMigrated[job.shard].isEmpty, waitingConnections[job.shard].isEmpty {
            switch send(job) {
            case .sent: return
            case .busy: watchForRoom(shard: job.shard)
            case .unavailable: break
            }
        }
        switch job.kind {
        case .connection:
            job.deadline = .now + connectionWait
            waitingConnections[job.shard].append(job)
        case .migrated:
            job.deadline = .now + migratedWait
            waitingMigrated[job.shard].append(job)
            sendWaiting(shard: job.shard)
        }
        waitingCount += 1
    }

    private func send(_ job: Job) -> SendResult {
        guard let link = table.links[job.shard] else { return .unavailable }
        do {
            try link.send(descriptor: job.fd, payload: job.payload)
            Syscall.close(job.fd)
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
        for queue in [\HandoffDispatcher.waitingMigrated, \HandoffDispatcher.waitingConnections] {
            while let job = self[keyPath: queue][shard].first {
                switch send(job) {
                case .sent:
                    self[keyPath: queue][shard].removeFirst()
                    waitingCount -= 1
                case .busy:
                    watchForRoom(shard: shard)
                    return
                case .unavailable:
                    return
                }
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

    // MARK: Events

    /// Reacts to a ready descriptor of the dispatcher's; false if `token` is not one.
    func handle(token: UInt64) -> Bool {
        if Self.writableTokens.contains(token) {
            sendWaiting(shard: Int(token - Self.writableTokens.lowerBound))
        } else if Self.drainTokens.contains(token) {
            drain(token: token)
        } else {
            return false
        }
        return true
    }

    /// The control plane published a new table: send what waits for shards that have a worker again, and start
    /// reading the streams of workers a reload retires.
    func tableChanged() {
        table = tables.take()
        for shard in table.links.indices {
            if watchedForRoom[shard] != nil, watchedForRoom[shard] !== table.links[shard] { stopWatchingForRoom(shard: shard) }
            if !waitingMigrated[shard].isEmpty || !waitingConnections[shard].isEmpty { sendWaiting(shard: shard) }
        }
        drained.formIntersection(table.retiring.map { ObjectIdentifier($0.link) })
        for (shard, link) in table.retiring
        where !drained.contains(ObjectIdentifier(link)) && !drains.values.contains(where: { $0.link === link }) {
            startDraining(link, shard: shard)
        }
    }

    /// The earliest deadline of a waiting connection.
    var nextDeadline: ContinuousClock.Instant? {
        guard waitingCount > 0 else { return nil }
        return (waitingMigrated + waitingConnections).compactMap(\.first?.deadline).min()
    }

    /// Gives up on the connections whose deadline has passed.
    func expire(now: ContinuousClock.Instant) {
        guard waitingCount > 0 else { return }
        for shard in waitingMigrated.indices {
            while let job = waitingMigrated[shard].first, job.deadline <= now {
                waitingMigrated[shard].removeFirst()
                waitingCount -= 1
                giveUp(job)
            }
            while let job = waitingConnections[shard].first, job.deadline <= now {
                waitingConnections[shard].removeFirst()
                waitingCount -= 1
                giveUp(job)
            }
            if waitingMigrated[shard].isEmpty, waitingConnections[shard].isEmpty { stopWatchingForRoom(shard: shard) }
        }
    }

    private func giveUp(_ job: Job) {
        switch job.kind {
        case .connection(let handoff):
            logger.warning(
                "no worker took the connection in time",
                metadata: ["worker": "\(job.shard)", "user": "\(handoff.userID)", "event": "handoff-timed-out"])
            onUnavailable(job.fd, handoff, job.shard)
        case .migrated(let userID):
            logger.warning(
                "a migrating stream found no worker; its client reconnects",
                metadata: ["worker": "\(job.shard)", "user": "\(userID)", "event": "migration-lost-stream"])
            Syscall.close(job.fd)
        }
    }

    /// Closes every connection still waiting (the accept loop stops).
    func closeAll() {
        for queue in waitingMigrated + waitingConnections {
            for job in queue { Syscall.close(job.fd) }
        }
        waitingMigrated = waitingMigrated.map { _ in CircularBuffer() }
        waitingConnections = waitingConnections.map { _ in CircularBuffer() }
        waitingCount = 0
    }

    // MARK: Streams coming back from a retiring worker

    private func startDraining(_ link: HandoffLink, shard: Int) {
        let token = nextDrainToken
        nextDrainToken = nextDrainToken + 1 < Self.drainTokens.upperBound ? nextDrainToken + 1 : Self.drainTokens.lowerBound
        do {
            try epoll.add(link.socket, events: .readable, token: token)
            drains[token] = Drain(shard: shard, link: link)
        } catch {
            logger.error("cannot read a retiring worker's streams; they end, and their clients resume", metadata: ["error": "\(error)"])
        }
    }

    private func drain(token: UInt64) {
        guard let drain = drains[token] else { return }
        while true {
            let received: DescriptorPassing.Received?
            do {
                received = try DescriptorPassing.receive(from: drain.link.socket, waiting: false, using: receiveBuffers)
            } catch .wouldBlock {
                return
            } catch {
                logger.error("bad message from a retiring worker; dropped", metadata: ["error": "\(error)"])
                continue
            }
            guard let received else { break }  // the retiring worker has exited
            guard let fd = received.descriptor else { continue }
            let handoff: Handoff
            do {
                handoff = try Handoff(decoding: received.payload)
            } catch {
                logger.error("unreadable stream from a retiring worker; closed", metadata: ["error": "\(error)"])
                Syscall.close(fd)
                continue
            }
            guard handoff.route == .migrated else {
                logger.error("a retiring worker sent something other than a stream; closed")
                Syscall.close(fd)
                continue
            }
            drains[token]?.received += 1
            dispatch(Job(fd: fd, payload: received.payload, shard: drain.shard, kind: .migrated(userID: handoff.userID)))
        }
        epoll.remove(drain.link.socket)
        drained.insert(ObjectIdentifier(drain.link))
        let streams = drains.removeValue(forKey: token)?.received ?? 0
        logger.info(
            "streams moved to the new worker",
            metadata: ["worker": "\(drain.shard)", "event": "connection-migrated", "streams": "\(streams)"])
    }
}
