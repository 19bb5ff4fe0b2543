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

    init(client: PostgresClient, hostID: String, link: LinkMonitor, logger: Logger, limit: Int = 100_000) {
        self.client = client
        self.hostID = hostID
        self.link = link
        self.logger = logger
        self.limit = limit
        (rings, doorbell) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    func record(_ change: UserChange) {
        queue.withLock { queue in
            queue.changes.append(change)
            if queue.changes.count > limit {
                queue.changes.removeFirst()
                queue.dropped += 1
            }
        }
        doorbell.yield()
    }

    /// Writes until cancelled.
    func run() async {
        var failures = 0
        for await _ in rings {
            while let batch = next() {
                while true {
                    do {
                        try await write(batch)
                        failures = 0
                        break
                    } catch {
                        if Task.isCancelled { return }
                        failures += 1
                        await link.failed(error, while: "recording users' changes")
                        try? await Task.sleep(for: RetryDelay().after(failures: failures))
                    }
                }
                queue.withLock { $0.changes.removeFirst(batch.count) }
            }
        }
    }

    /// The oldest changes, without taking them off the queue (they go once written).
    private func next() -> [UserChange]? {
        let (batch, dropped) = queue.withLock { queue -> ([UserChange], Int) in
            defer { queue.dropped = 0 }
            return (Array(queue.changes.prefix(batchLimit)), queue.dropped)
        }
        if dropped > 0 {
            logger.error(
                "users' changes were dropped while the event log was away: other hosts may not know of some subscriptions",
                metadata: ["dropped": "\(dropped)", "event": "user-changes-dropped"])
        }
        return batch.isEmpty ? nil : batch
    }

    private func write(_ changes: [UserChange]) async throws {
        let columns = ChangeColumns(changes)
        let (client, logger, hostID) = (client, logger, hostID)
        _ = try await Deadline.run(within: .seconds(5)) {
            try await client.query(
                "SELECT sse_hub.append_user_changes(\(hostID), \(columns.kinds), \(columns.users), \(columns.topics))",
                logger: logger
            ).collect()
        }
        await link.succeeded()
    }
}

/// Changes as `sse_hub.append_user_changes`' arrays: one row per topic; an empty topic stands for none.
struct ChangeColumns: Sendable {
    var kinds: [String] = []
    var users: [String] = []
    var topics: [String] = []

    init(_ changes: [UserChange]) {
        for change in changes {
            switch change {
            case .subscribed(let change):
                for topic in change.topics { append("subscribed", change.userID, topic) }
            case .unsubscribed(let change):
                for topic in change.topics { append("unsubscribed", change.userID, topic) }
            case .streamOpened(let userID):
                append("stream", userID, "")
            case .streamClosed(let userID):
                append("closed", userID, "")
            case .forgotten:
                continue  // the database's sweep writes these, never a host
            }
        }
    }

    private mutating func append(_ kind: String, _ user: String, _ topic: String) {
        kinds.append(kind)
        users.append(user)
        topics.append(topic)
    }
}
