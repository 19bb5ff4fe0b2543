import Foundation
import Logging
import PostgresNIO
import SupervisorCore

/// This host's row in `sse_hub.hosts`, beaten every `interval` with its counts and cursor; each beat also reads the
/// other hosts' rows (the hub's stats, health's heartbeats) and, every few beats, sweeps the log's retention. A
/// failed beat marks the log unreachable; the next good one marks it back.
struct HostHeartbeat: Sendable {
    let client: PostgresClient
    let hostID: String
    let link: LinkMonitor
    let retention: LogRetention
    let presence: HubPresence
    let logger: Logger
    var interval: Duration = .seconds(2)
    /// A host whose last beat is older is left out of the hub's stats and health (it died, or lost the database).
    var hostTimeout: Duration = .seconds(10)
    var beatsPerSweep = 5
    private let startedAt = Date()

    init(client: PostgresClient, hostID: String, link: LinkMonitor, presence: HubPresence, retention: LogRetention, logger: Logger) {
        self.client = client
        self.hostID = hostID
        self.link = link
        self.presence = presence
        self.retention = retention
        self.logger = logger
    }

    /// Beats every `interval`, and at once when the link is lost (`LinkMonitor.probes`), until cancelled.
    func run(hub: SharedLogHub) async {
        await withDiscardingTaskGroup { group in
            group.addTask { [link, interval] in
                while !Task.isCancelled {
                    link.requestProbe()
                    try? await Task.sleep(for: interval)
                }
            }
            var beats = 0
            for await _ in link.probes {
                if Task.isCancelled { break }
                do {
                    try await Deadline.run(within: interval * 2) { try await beat(hub: hub) }
                    // Each beat, so a user goes offline within a beat of their grace.
                    try await presence.announceOffline()
                    beats += 1
                    if beats % beatsPerSweep == 1 { try await retention.sweep() }
                } catch {
                    if Task.isCancelled { break }
                    await link.failed(error, while: "beating this host's heartbeat")
                    // While the database is away, probe on the heartbeat's clock only.
                    try? await Task.sleep(for: .milliseconds(250))
                }
            }
            group.cancelAll()
        }
    }

    private func beat(hub: SharedLogHub) async throws {
        let local = try await hub.localStats()
        let topics = String(decoding: try JSONEncoder().encode(local.topics), as: UTF8.self)
        try await client.query(
            """
            INSERT INTO sse_hub.hosts (host_id, started_at, heartbeat_at, log_cursor, clients, topics)
            VALUES (\(hostID), \(startedAt), now(), \(Int64(local.cursor)), \(local.clients), \(topics)::jsonb)
            ON CONFLICT (host_id) DO UPDATE SET started_at = excluded.started_at, heartbeat_at = now(),
                log_cursor = excluded.log_cursor, clients = excluded.clients, topics = excluded.topics
            """, logger: logger)
        let timeout = Double(hostTimeout.components.seconds)
        let rows = try await client.query(
            """
            SELECT host_id, (extract(epoch FROM now() - heartbeat_at) * 1000)::int8, log_cursor, clients, topics::text,
                (SELECT last_id FROM sse_hub.head)
            FROM sse_hub.hosts WHERE heartbeat_at > now() - make_interval(secs => \(timeout)) ORDER BY host_id
            """, logger: logger)
        var hosts: [SharedLogStatus.Host] = []
        // The log's head rides along on every row (this host's own row, just written, is always one of them).
        var head: Int64?
        for try await (id, age, cursor, clients, topicsJSON, last) in rows.decode((String, Int64, Int64, Int32, String, Int64).self) {
            head = last
            let topics = (try? JSONDecoder().decode([String: Int].self, from: Data(topicsJSON.utf8))) ?? [:]
            hosts.append(
                SharedLogStatus.Host(
                    hostID: id, heartbeatAgeMilliseconds: max(0, age), cursor: UInt64(max(0, cursor)),
                    clients: Int(clients), topics: topics))
        }
        await link.heartbeat(hosts: hosts, head: head.map { UInt64(max(0, $0)) })
    }

    /// Removes this host's row and its streams (graceful shutdown): the hub's stats and presence drop them at once.
    func leave() async {
        do {
            _ = try await Deadline.run(within: .seconds(2)) { [client, hostID, logger, presence] in
                try await client.query("DELETE FROM sse_hub.hosts WHERE host_id = \(hostID)", logger: logger)
                try await client.withConnection { try await presence.dropThisHostsStreams(on: $0) }
            }
            logger.info("left the hub", metadata: ["host": "\(hostID)", "event": "host-left"])
        } catch {
            logger.warning("could not remove this host from the hub's hosts; it ages out", metadata: ["error": "\(DatabaseErrorText.describe(error))"])
        }
    }
}

/// Keeps the log within `--history-size` events and `--history-ttl` seconds, in the database: bounded deletes of the
/// oldest rows (a few thousand at a time, so no lock is held long), by one host at a time (an advisory lock).
struct LogRetention: Sendable {
    let client: PostgresClient
    let size: Int
    let ttl: Duration
    let topicGrace: Duration
    let logger: Logger
    var rowsPerDelete = 5000
    /// Rows of `sse_hub.hosts` silent this long are removed (hosts that died and never came back).
    var forgetHostsAfter: Duration = .seconds(86_400)

    func sweep() async throws {
        let ttlSeconds = Double(ttl.components.seconds)
        // Everything up to the newer of: `size` events behind the head, and the last event past its age.
        let deleted = try await repeatUnderRetentionLock(stepLimit: rowsPerDelete) { connection in
            let rows = try await connection.query(
                """
                WITH bound AS (
                    SELECT greatest(
                        (SELECT last_id FROM sse_hub.head) - \(Int64(size)),
                        coalesce((SELECT id FROM sse_hub.events WHERE published_at < now() - make_interval(secs => \(ttlSeconds))
                                  ORDER BY published_at DESC LIMIT 1), 0)) AS through
                ), doomed AS (
                    SELECT id FROM sse_hub.events WHERE id <= (SELECT through FROM bound) ORDER BY id LIMIT \(rowsPerDelete)
                ), deleted AS (
                    DELETE FROM sse_hub.events WHERE id IN (SELECT id FROM doomed) RETURNING 1
                )
                SELECT count(*) FROM deleted
                """, logger: logger)
            return Int(try await rows.single(Int64.self) ?? 0)
        }
        if deleted > 0 { logger.debug("log retention", metadata: ["deleted": "\(deleted)", "event": "log-retention"]) }
        try await forgetDarkUsers()
        // Users' changes older than the oldest event kept: a host that joins starts from `user_topics`, not from them.
        try await client.query(
            """
            DELETE FROM sse_hub.user_changes WHERE seq IN (
                SELECT seq FROM sse_hub.user_changes
                WHERE after_event < coalesce((SELECT min(id) FROM sse_hub.events), (SELECT last_id FROM sse_hub.head))
                ORDER BY seq LIMIT \(rowsPerDelete * 4))
            """, logger: logger)
        let forgetSeconds = Double(forgetHostsAfter.components.seconds)
        try await client.query(
            "DELETE FROM sse_hub.hosts WHERE heartbeat_at < now() - make_interval(secs => \(forgetSeconds))", logger: logger)
    }

    /// The hub's topic grace: users with topics and no stream anywhere for `topicGrace` are forgotten (every host
    /// hears it through the log), a thousand at a time.
    private func forgetDarkUsers() async throws {
        let graceSeconds = Double(topicGrace.components.seconds)
        let forgotten = try await repeatUnderRetentionLock(stepLimit: 1000) { connection in
            let rows = try await connection.query("SELECT sse_hub.forget_dark_users(\(graceSeconds), 1000)", logger: logger)
            return Int(try await rows.single(Int32.self) ?? 0)
        }
        if forgotten > 0 { logger.info("forgot users past their grace", metadata: ["users": "\(forgotten)", "event": "users-forgotten"]) }
    }

    /// Runs `step` (one bounded piece of work, answering how many rows it took) again and again, each time in its own
    /// transaction under the retention lock, until a step takes fewer than `stepLimit` or another host holds the
    /// lock; returns the rows taken in all.
    private func repeatUnderRetentionLock(
        stepLimit: Int, _ step: (PostgresConnection) async throws -> Int
    ) async throws -> Int {
        var total = 0
        while true {
            let count = try await client.withTransaction(logger: logger) { connection in
                let locked = try await connection.query("SELECT pg_try_advisory_xact_lock(\(LogSchema.retentionLock))", logger: logger)
                guard try await locked.single(Bool.self) == true else { return 0 }
                return try await step(connection)
            }
            total += count
            if count < stepLimit { return total }
        }
    }
}
