import Logging
import PostgresNIO
import Shared
import Synchronization
import SupervisorCore

/// Writes this host's users' changes (topics taken and dropped, streams opened and closed) to the log, in the order
/// they were made, many per statement. While the database is away it keeps them (at most `limit`: past it the
/// oldest go, said in the journal) and tries again, so a subscription made during an outage still reaches the other
/// hosts once the log is back. The recording side never waits: `record` only queues.
final class UserChangeWriter: Sendable {
    private struct Queue {
        var changes: [UserChange] = []
        var dropped = 0
        /// How many changes were written (or dropped) before `changes.first`: the queue's position in all recorded.
        var written: UInt64 = 0
        var recorded: UInt64 { written + UInt64(changes.count) }
        /// Callers of `committed`, each with how many changes had been recorded when it asked.
        var waiting: [(through: UInt64, continuation: CheckedContinuation<Void, any Error>)] = []
        /// The writer stopped (the host leaves the hub): nobody waits any more.
        var stopped = false

        /// The changes up to `end` (a position) are written: off the queue, unless dropped meanwhile.
        mutating func written(through end: UInt64) {
            guard end > written else { return }
            changes.removeFirst(Int(end - written))
            written = end
        }

        mutating func takeWaiting(through limit: UInt64 = .max) -> [CheckedContinuation<Void, any Error>] {
            let due = waiting.filter { $0.through <= limit }.map(\.continuation)
            waiting.removeAll { $0.through <= limit }
            return due
        }
    }

    private let client: PostgresClient
    private let hostID: String
    private let link: LinkMonitor
    private let logger: Logger
    private let limit: Int
    private let batchLimit = 1000
    private let queue = Mutex(Queue())
    private let rings: AsyncStream<Void>
    private let doorbell: AsyncStream<Void>.Continuation

    /// How the database counts this host's streams: `--max-streams-per-user`, and whether it publishes presence.
    private let maximumStreamsPerUser: Int
    private let presenceEvents: Bool

    init(
        client: PostgresClient, hostID: String, link: LinkMonitor, logger: Logger, maximumStreamsPerUser: Int, presenceEvents: Bool,
        limit: Int = 100_000
    ) {
        self.client = client
        self.hostID = hostID
        self.maximumStreamsPerUser = maximumStreamsPerUser
        self.presenceEvents = presenceEvents
        self.link = link
        self.logger = logger
        self.limit = limit
        (rings, doorbell) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    func record(_ change: UserChange) {
        let lost = queue.withLock { queue -> [CheckedContinuation<Void, any Error>] in
            queue.changes.append(change)
            guard queue.changes.count > limit else { return [] }
            queue.written(through: queue.written + 1)
            queue.dropped += 1
            return queue.takeWaiting()  // whoever waits may wait for the dropped change
        }
        fail(lost, SharedLogUnavailable(reason: "users' changes were dropped while the event log was away"))
        doorbell.yield()
    }

    /// Returns once every change recorded before the call is written; throws when a write fails meanwhile (the
    /// changes stay queued, and the writer keeps trying).
    func committed() async throws {
        try await withCheckedThrowingContinuation { continuation in
            let answer: Result<Void, SharedLogUnavailable>? = queue.withLock { queue in
                if queue.stopped { return .failure(SharedLogUnavailable(reason: "the host is leaving the hub")) }
                if queue.changes.isEmpty { return .success(()) }
                queue.waiting.append((queue.recorded, continuation))
                return nil
            }
            if let answer { continuation.resume(with: answer) }
        }
    }

    /// Writes until cancelled.
    func run() async {
        defer {
            let waiting = queue.withLock { queue in
                queue.stopped = true
                return queue.takeWaiting()
            }
            fail(waiting, SharedLogUnavailable(reason: "the host is leaving the hub"))
        }
        var failures = 0
        for await _ in rings {
            while let (batch, start) = next() {
                while true {
                    do {
                        try await write(batch)
                        failures = 0
                        break
                    } catch {
                        fail(queue.withLock { $0.takeWaiting() }, SharedLogUnavailable(reason: DatabaseErrorText.describe(error)))
                        if Task.isCancelled { return }
                        failures += 1
                        await link.failed(error, while: "recording users' changes")
                        try? await Task.sleep(for: RetryDelay().after(failures: failures))
                    }
                }
                let due = queue.withLock { queue in
                    queue.written(through: start + UInt64(batch.count))
                    return queue.takeWaiting(through: queue.written)
                }
                for continuation in due { continuation.resume() }
            }
        }
    }

    private func fail(_ waiting: [CheckedContinuation<Void, any Error>], _ error: SharedLogUnavailable) {
        for continuation in waiting { continuation.resume(throwing: error) }
    }

    /// The oldest changes and the position of the first, without taking them off the queue (they go once written).
    private func next() -> (changes: [UserChange], start: UInt64)? {
        let (batch, start, dropped) = queue.withLock { queue -> ([UserChange], UInt64, Int) in
            defer { queue.dropped = 0 }
            return (Array(queue.changes.prefix(batchLimit)), queue.written, queue.dropped)
        }
        if dropped > 0 {
            logger.error(
                "users' changes were dropped while the event log was away: other hosts may not know of some subscriptions",
                metadata: ["dropped": "\(dropped)", "event": "user-changes-dropped"])
        }
        return batch.isEmpty ? nil : (batch, start)
    }

    private func write(_ changes: [UserChange]) async throws {
        let columns = ChangeColumns(changes)
        let (client, logger, hostID, limit, presence) = (client, logger, hostID, Int32(maximumStreamsPerUser), presenceEvents)
        _ = try await Deadline.run(within: .seconds(5)) {
            try await client.query(
                """
                SELECT sse_hub.append_user_changes(\(hostID), \(columns.kinds), \(columns.users), \(columns.topics), \(columns.stamps),
                    \(columns.shards), \(limit), \(presence))
                """,
                logger: logger
            ).collect()
        }
        await link.succeeded()
    }
}

/// Changes as `sse_hub.append_user_changes`' arrays: one row per topic; an empty topic stands for none, a stamp of
/// 0 for every stream of the user, a shard of -1 for none.
struct ChangeColumns: Sendable, Equatable {
    var kinds: [String] = []
    var users: [String] = []
    var topics: [String] = []
    var stamps: [Int64] = []
    var shards: [Int32] = []

    init(_ changes: [UserChange]) {
        for change in changes {
            switch change {
            case .subscribed(let change):
                for topic in change.topics { append("subscribed", change.userID, topic: topic) }
            case .unsubscribed(let change):
                for topic in change.topics { append("unsubscribed", change.userID, topic: topic) }
            case .streamOpened(let stream, let shard):
                append("stream", stream.userID, stamp: stream.openedAt, shard: shard)
            case .streamClosed(let stream):
                append("closed", stream.userID, stamp: stream.openedAt)
            case .streamsLost(let shard):
                append("lost", "", shard: shard)
            case .replaced, .forgotten:
                continue  // the database writes these, never a host
            }
        }
    }

    private mutating func append(_ kind: String, _ user: String, topic: String = "", stamp: Int64 = 0, shard: Int = -1) {
        kinds.append(kind)
        users.append(user)
        topics.append(topic)
        stamps.append(stamp)
        shards.append(Int32(clamping: shard))
    }
}
