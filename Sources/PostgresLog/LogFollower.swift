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
    /// The pool the reads go through: the `LISTEN` connection only rings (a read in flight on a connection whose
    /// notifications failed was seen never to be answered).
    let client: PostgresClient
    let link: LinkMonitor
    let logger: Logger
    var pollInterval: Duration = .seconds(1)
    var batchSize = 2000
    var readTimeout: Duration = .seconds(10)
    var retryDelay = RetryDelay()

    /// Runs until cancelled (graceful shutdown).
    func run(after start: SharedLogCursor, hub: SharedLogHub) async {
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

    private func follow(on connection: PostgresConnection, cursor: inout SharedLogCursor, hub: SharedLogHub) async throws {
        try await checkNotRewound(cursor: cursor.event, on: connection)
        try await connection.listen(on: LogSchema.doorbell) { notifications in
            let (doorbell, ring) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    defer { ring.finish() }
                    do {
                        for try await _ in notifications { ring.yield() }
                        throw ListenEnded()
                    } catch {
                        // A read in flight on this connection may never be answered now (seen when the server ends
                        // the session): closing the connection fails it, and the follower reconnects.
                        try? await connection.close()
                        throw error
                    }
                }
                group.addTask { [pollInterval] in
                    while true {
                        try await Task.sleep(for: pollInterval)
                        ring.yield()
                    }
                }
                ring.yield()  // catch up at once: what was committed while this host was not listening
                do {
                    for await _ in doorbell { try await readAll(after: &cursor, hub: hub) }
                    // The doorbell closes only when the notifications end: say why.
                    try await group.next()
                } catch {
                    // A read failed: the notifications' task does not heed cancellation, but ends with the connection
                    // (without this the group would wait for it forever, and the host would stop following the log).
                    group.cancelAll()
                    try? await connection.close()
                    throw error
                }
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
    private func readAll(after cursor: inout SharedLogCursor, hub: SharedLogHub) async throws {
        while true {
            let (read, limit, logger, client) = (cursor, batchSize, logger, client)
            // Bounded, like every exchange with the database: a read that is never answered must not stop the host.
            let batch = try await Deadline.run(within: readTimeout) {
                try await client.withConnection { connection in
                    try await LogBatch.read(after: read, limit: limit, on: connection, logger: logger)
                }
            }
            await link.succeeded()
            guard batch.through != cursor else { return }
            if !batch.entries.isEmpty { try await hub.deliver(batch.entries, through: batch.through) }
            cursor = batch.through
            if !batch.more { return }
        }
    }
}

/// One read of the log: events and users' changes from one snapshot, merged into the one order every host applies
/// (a change written after event k comes after event k and before k + 1).
struct LogBatch {
    var entries: [SharedLogEntry]
    var through: SharedLogCursor
    /// Whether the read stopped at a limit (read again at once).
    var more: Bool

    /// One statement, so one snapshot (and one round trip): the events after the cursor, and the users' changes
    /// written before the last of them.
    static func read(after cursor: SharedLogCursor, limit: Int, on connection: PostgresConnection, logger: Logger) async throws -> LogBatch {
        let rows = try await connection.query(
            """
            WITH ev AS (
                SELECT \(unescaped: LogEvent.columns)
                FROM sse_hub.events WHERE id > \(Int64(cursor.event)) ORDER BY id LIMIT \(limit)
            ), bound AS (
                SELECT coalesce(max(id), \(Int64(cursor.event))) AS through FROM ev
            ), ch AS (
                SELECT seq, after_event, kind, user_id, topic, host_id, coalesce(opened_at, 0) AS opened_at FROM sse_hub.user_changes
                WHERE seq > \(Int64(cursor.change)) AND after_event <= (SELECT through FROM bound) ORDER BY seq LIMIT \(limit)
            )
            SELECT 0, id, 0::int8, event, data, topic, user_id, published_ms FROM ev
            UNION ALL SELECT 1, seq, after_event, kind, user_id, topic, host_id, opened_at FROM ch
            UNION ALL SELECT 2, through, 0::int8, '', NULL, NULL, NULL, 0::int8 FROM bound
            ORDER BY 1, 2
            """, logger: logger)
        var events: [PublishCommand] = []
        var eventRows = 0
        var lastEventRead = cursor.event
        var changes = LoggedChanges()
        for try await (source, position, after, first, second, third, fourth, at) in rows.decode(
            (Int32, Int64, Int64, String, String?, String?, String?, Int64).self)
        {
            switch source {
            case 0:
                eventRows += 1
                lastEventRead = UInt64(position)
                if let command = LogEvent.command(
                    id: position, event: first, data: second ?? "", topic: third, userID: fourth, publishedAt: at, logger: logger)
                {
                    events.append(command)
                }
            case 1:
                changes.add(
                    seq: UInt64(position), after: UInt64(after), userID: second ?? "", kind: first, topic: third, hostID: fourth ?? "",
                    openedAt: at, logger: logger)
            default:
                lastEventRead = max(lastEventRead, UInt64(max(0, position)))
            }
        }
        return merge(
            events: events, lastEventRead: lastEventRead, changes: changes, cursor: cursor, eventsFull: eventRows >= limit,
            changesFull: changes.rows >= limit)
    }

    static func merge(
        events: [PublishCommand], lastEventRead: UInt64, changes: LoggedChanges, cursor: SharedLogCursor, eventsFull: Bool, changesFull: Bool
    ) -> LogBatch {
        // When the changes stopped at their limit, later ones may belong before later events: stop the events there.
        let eventsThrough = changesFull ? min(lastEventRead, changes.lastRow?.after ?? cursor.event) : lastEventRead
        var entries: [SharedLogEntry] = []
        var pending = changes.grouped[...]
        for event in events where event.sequence <= eventsThrough {
            while let change = pending.first, change.after < event.sequence {
                entries.append(.userChange(change.change, hostID: change.hostID))
                pending = pending.dropFirst()
            }
            entries.append(.event(event))
        }
        for change in pending { entries.append(.userChange(change.change, hostID: change.hostID)) }
        let through = SharedLogCursor(event: max(cursor.event, eventsThrough), change: changes.lastRow?.seq ?? cursor.change)
        return LogBatch(entries: entries, through: through, more: eventsFull || changesFull)
    }
}

/// Rows of `sse_hub.user_changes` (one per topic) folded back into changes: consecutive rows of one kind, user and
/// host between the same two events are one change.
struct LoggedChanges {
    struct Logged {
        var change: UserChange
        var hostID: String
        var after: UInt64
        var seq: UInt64
    }

    private(set) var grouped: [Logged] = []
    private(set) var rows = 0
    /// The last row read, understood or not (the cursor moves past it either way).
    private(set) var lastRow: (seq: UInt64, after: UInt64)?

    mutating func add(
        seq: UInt64, after: UInt64, userID: String, kind: String, topic: String?, hostID: String, openedAt: Int64 = 0, logger: Logger
    ) {
        rows += 1
        lastRow = (seq, after)
        let change: UserChange
        switch (kind, topic) {
        case ("subscribed", let topic?):
            if extendLast(with: topic, of: userID, hostID: hostID, after: after, seq: seq, as: UserChange.subscribed) { return }
            change = .subscribed(UserTopics(userID: userID, topics: [topic]))
        case ("unsubscribed", let topic?):
            if extendLast(with: topic, of: userID, hostID: hostID, after: after, seq: seq, as: UserChange.unsubscribed) { return }
            change = .unsubscribed(UserTopics(userID: userID, topics: [topic]))
        case ("stream", _):
            return  // counted by the database, which says what follows from it (`replaced`)
        case ("replaced", _):
            change = .replaced(UserStream(userID: userID, openedAt: openedAt))
        case ("forgotten", _):
            change = .forgotten(userID: userID)
        default:
            logger.error("skipping a user change of the log the hub does not know", metadata: ["seq": "\(seq)", "event": "log-row-invalid"])
            return
        }
        grouped.append(Logged(change: change, hostID: hostID, after: after, seq: seq))
    }

    /// Adds `topic` to the last change when it is the same kind (`make`), user and host, between the same events.
    private mutating func extendLast(
        with topic: String, of userID: String, hostID: String, after: UInt64, seq: UInt64, as make: (UserTopics) -> UserChange
    ) -> Bool {
        guard let previous = grouped.last, previous.hostID == hostID, previous.after == after else { return false }
        let topics: UserTopics
        switch previous.change {
        case .subscribed(let existing), .unsubscribed(let existing): topics = existing
        default: return false
        }
        guard topics.userID == userID, make(topics) == previous.change else { return false }
        grouped[grouped.count - 1].change = make(UserTopics(userID: userID, topics: topics.topics + [topic]))
        grouped[grouped.count - 1].seq = seq
        return true
    }
}

struct LogRewound: Error, CustomStringConvertible {
    var head: Int64
    var cursor: UInt64
    var description: String { "the log's head (\(head)) is behind this host's cursor (\(cursor)): restart this host" }
}

/// A row of the log as the plane delivers it.
///
/// `columns` selects an event's row as `command` takes it (`published_ms` in milliseconds since 1970). The table's checks keep names valid; a row that passes them but
/// not the hub's own rules (written around `sse_hub.publish`, by hand) is logged and skipped, never sent: it could
/// break the SSE framing of every stream.
enum LogEvent {
    static let columns = "id, event, data, topic, user_id, (extract(epoch FROM published_at) * 1000)::int8 AS published_ms"
    typealias Row = (Int64, String, String, String?, String?, Int64)

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

