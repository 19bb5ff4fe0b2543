import Logging
import NIOCore
import PostgresNIO
import Shared
import SupervisorCore

/// Reads the log in position order and hands each batch to the control plane, on its own connection: `LISTEN` on
/// the doorbell wakes it when a publishing transaction commits, and a timer wakes it anyway (`pollInterval`), so a
/// notification lost (while the connection was down, say) only delays. After a reconnect it continues from the
/// last position it delivered: nothing is skipped, nothing delivered twice.
struct LogFollower: Sendable {
    let url: PostgresURL
    let link: LinkMonitor
    let logger: Logger
    var pollInterval: Duration = .seconds(1)
    var batchSize = 2000
    var retryDelay = RetryDelay()

    /// Runs until cancelled (graceful shutdown).
    func run(after start: UInt64, hub: SharedLogHub) async {
        var cursor = start
        var attempt = 0
        while !Task.isCancelled {
            do {
                let connection = try await PostgresConnection.connect(
                    configuration: try url.connectionConfiguration(), id: 1, logger: logger)
                attempt = 0
                defer { Task { try? await connection.close() } }
                try await follow(on: connection, cursor: &cursor, hub: hub)
            } catch {
                if Task.isCancelled { return }
                await link.failed(error, while: "following the log")
                attempt += 1
                try? await Task.sleep(for: retryDelay.after(failures: attempt))
            }
        }
    }

    private struct ListenEnded: Error, CustomStringConvertible {
        var description: String { "the notification stream ended" }
    }

    private func follow(on connection: PostgresConnection, cursor: inout UInt64, hub: SharedLogHub) async throws {
        try await checkNotRewound(cursor: cursor, on: connection)
        try await connection.listen(on: LogSchema.doorbell) { notifications in
            let (doorbell, ring) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    defer { ring.finish() }
                    for try await _ in notifications { ring.yield() }
                    throw ListenEnded()
                }
                group.addTask { [pollInterval] in
                    while true {
                        try await Task.sleep(for: pollInterval)
                        ring.yield()
                    }
                }
                ring.yield()  // catch up at once: what was committed while this host was not listening
                for await _ in doorbell { try await readAll(after: &cursor, on: connection, hub: hub) }
                // The doorbell closes only when the notifications end: say why.
                try await group.next()
                group.cancelAll()
            }
        }
    }

    /// A log whose head is behind what this host delivered was restored from an older backup (or lost commits):
    /// positions this host already delivered will be given to new events, which it would skip as seen. Said loudly,
    /// with what to do; a host that restarts joins the log as it is now.
    private func checkNotRewound(cursor: UInt64, on connection: PostgresConnection) async throws {
        let head = try await connection.query("SELECT last_id FROM sse_hub.head", logger: logger).single(Int64.self) ?? 0
        guard head < Int64(cursor) else { return }
        logger.critical(
            "the event log is behind what this host delivered (restored from an older backup?): restart this host so it rejoins the log as it is",
            metadata: ["head": "\(head)", "cursor": "\(cursor)", "event": "log-rewound"])
        await link.failed(LogRewound(head: head, cursor: cursor), while: "following the log")
    }

    /// Reads and delivers batches until the log holds nothing past `cursor`.
    private func readAll(after cursor: inout UInt64, on connection: PostgresConnection, hub: SharedLogHub) async throws {
        while true {
            let rows = try await connection.query(
                """
                SELECT id, event, data, topic, user_id, (extract(epoch FROM published_at) * 1000)::int8
                FROM sse_hub.events WHERE id > \(Int64(cursor)) ORDER BY id LIMIT \(batchSize)
                """, logger: logger)
            var batch: [PublishCommand] = []
            for try await row in rows.decode((Int64, String, String, String?, String?, Int64).self) {
                let (id, event, data, topic, userID, publishedAt) = row
                guard let command = LogEvent.command(
                    id: id, event: event, data: data, topic: topic, userID: userID, publishedAt: publishedAt, logger: logger)
                else { continue }
                batch.append(command)
            }
            await link.succeeded(cursor: cursor)
            guard let last = batch.last else { return }
            try await hub.deliver(batch)
            cursor = last.sequence
            await link.succeeded(cursor: cursor)
            if batch.count < batchSize { return }
        }
    }
}

struct LogRewound: Error, CustomStringConvertible {
    var head: Int64
    var cursor: UInt64
    var description: String { "the log's head (\(head)) is behind this host's cursor (\(cursor)): restart this host" }
}

/// A row of the log as the plane delivers it. The table's checks keep names valid; a row that passes them but
/// not the hub's own rules (written around `sse_hub.publish`, by hand) is logged and skipped, never sent: it could
/// break the SSE framing of every stream.
enum LogEvent {
    static func command(
        id: Int64, event: String, data: String, topic: String?, userID: String?, publishedAt: Int64, logger: Logger
    ) -> PublishCommand? {
        let target: PublishTarget
        switch (topic, userID) {
        case (nil, nil): target = .everyone
        case (let topic?, nil) where HubName.isValidTopic(topic): target = .topic(topic)
        case (nil, let userID?) where !userID.isEmpty && userID.utf8.count <= Handoff.maximumUserIDBytes: target = .user(userID)
        default: target = .everyone
        }
        guard id > 0, HubName.isValidEvent(event), topic == nil || target != .everyone, userID == nil || target != .everyone
        else {
            logger.error("skipping an event of the log that breaks the hub's rules", metadata: ["id": "\(id)", "event": "log-row-invalid"])
            return nil
        }
        return PublishCommand(target: target, event: event, data: data, sequence: UInt64(id), publishedAt: publishedAt)
    }
}

/// How long to wait before the next attempt after `failures` in a row: doubling from 100 ms, at most 5 s.
struct RetryDelay: Sendable {
    var first: Duration = .milliseconds(100)
    var longest: Duration = .seconds(5)

    func after(failures: Int) -> Duration {
        let doubled = first * (1 << min(max(failures - 1, 0), 16))
        return min(doubled, longest)
    }
}
