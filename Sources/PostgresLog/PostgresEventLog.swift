import Foundation
import Logging
import PostgresNIO
import ServiceLifecycle
import Shared
import SupervisorCore

/// The event log of a hub that spans several hosts, in PostgreSQL: the `sse_hub.events` table is the log (a
/// position per event, given in commit order by `sse_hub.head`'s row lock), `NOTIFY` only rings the doorbell.
/// This host appends its HTTP publishes in group commits (`GroupCommitWriter`), follows the log from where it
/// joined (`LogFollower`), beats its heartbeat and sweeps retention (`HostHeartbeat`, `LogRetention`).
public final class PostgresEventLog: SharedEventLog {
    public struct Settings: Sendable {
        public var url: PostgresURL
        public var hostID: String
        /// This host's history bounds: the tail read on joining, and the log's retention.
        public var historySize: Int
        public var historyTTL: Duration
        /// How long a user with no stream anywhere keeps their topics (`--topic-grace`), kept by the database.
        public var topicGrace: Duration
        /// `--max-streams-per-user`, counted across hosts by the database (every host of a hub should agree).
        public var maximumStreamsPerUser: Int
        /// `--presence-events` with its grace, published by the database; nil: none.
        public var presenceGrace: Duration?
        /// This host's streams outlived its last program (an in-place upgrade): the hub keeps counting them. Otherwise
        /// the streams the log holds for this host are from a run that ended, and are dropped on joining.
        public var streamsCarryOn: Bool

        public init(
            url: PostgresURL, hostID: String, historySize: Int, historyTTL: Duration, topicGrace: Duration,
            maximumStreamsPerUser: Int = 1, presenceGrace: Duration? = nil, streamsCarryOn: Bool = false
        ) {
            self.url = url
            self.hostID = hostID
            self.historySize = historySize
            self.historyTTL = historyTTL
            self.topicGrace = topicGrace
            self.maximumStreamsPerUser = maximumStreamsPerUser
            self.presenceGrace = presenceGrace
            self.streamsCarryOn = streamsCarryOn
        }
    }

    public let hostID: String
    private let settings: Settings
    private let logger: Logger
    private let client: PostgresClient
    private let link: LinkMonitor
    private let writer: GroupCommitWriter
    private let changes: UserChangeWriter
    private let presence: HubPresence

    private init(settings: Settings, logger: Logger) throws {
        self.settings = settings
        self.logger = logger
        hostID = settings.hostID
        client = PostgresClient(configuration: try settings.url.clientConfiguration(), backgroundLogger: logger)
        link = LinkMonitor(hostID: settings.hostID, logger: logger)
        writer = GroupCommitWriter(client: client, link: link, logger: logger)
        changes = UserChangeWriter(
            client: client, hostID: settings.hostID, link: link, logger: logger, maximumStreamsPerUser: settings.maximumStreamsPerUser,
            presenceEvents: settings.presenceGrace != nil)
        presence = HubPresence(client: client, hostID: settings.hostID, logger: logger, grace: settings.presenceGrace)
    }

    /// Connects, creates or upgrades the schema (refusing a newer one: `LogSchema.NewerSchema`), and reads where the
    /// log stands: its identity and the tail this host's history holds.
    public static func open(_ settings: Settings, logger: Logger) async throws -> (PostgresEventLog, SharedLogStart) {
        let connection = try await PostgresConnection.connect(
            configuration: try settings.url.connectionConfiguration(), id: 0, logger: logger)
        do {
            let before = try await LogSchema.prepare(on: connection, logger: logger)
            if before == 0 { logger.notice("created the event log's schema", metadata: ["event": "log-schema-created"]) }
            if !settings.streamsCarryOn {
                try await HubPresence.dropStreams(
                    of: settings.hostID, presenceEvents: settings.presenceGrace != nil, on: connection, logger: logger)
            }
            let start = try await readStart(on: connection, settings: settings, logger: logger)
            try await connection.close()
            let log = try PostgresEventLog(settings: settings, logger: logger)
            return (log, start)
        } catch {
            try? await connection.close()
            throw error
        }
    }

    /// The identity, the head, the retained tail and the users' topics, read in one snapshot so they agree; and
    /// the last user change in it.
    private static func readStart(
        on connection: PostgresConnection, settings: Settings, logger: Logger
    ) async throws -> SharedLogStart {
        try await connection.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", logger: logger)
        let identity = try await connection.query("SELECT log_id FROM sse_hub.meta", logger: logger).single(Int64.self)
        let head = try await connection.query("SELECT last_id FROM sse_hub.head", logger: logger).single(Int64.self)
        let lastChange = try await connection.query("SELECT last_change FROM sse_hub.head", logger: logger).single(Int64.self) ?? 0
        guard let identity, identity > 0, let head, head >= 0 else {
            _ = try? await connection.query("ROLLBACK", logger: logger)
            throw SharedLogUnavailable(reason: "sse_hub.meta or sse_hub.head has no row: the schema was damaged")
        }
        let ttlSeconds = Double(settings.historyTTL.components.seconds)
        let rows = try await connection.query(
            """
            SELECT \(unescaped: LogEvent.columns)
            FROM sse_hub.events WHERE id > \(head - Int64(settings.historySize))
                AND published_at > now() - make_interval(secs => \(ttlSeconds))
            ORDER BY id
            """, logger: logger)
        var events: [PublishCommand] = []
        for try await (id, event, data, topic, userID, publishedAt) in rows.decode(LogEvent.Row.self) {
            if let command = LogEvent.command(
                id: id, event: event, data: data, topic: topic, userID: userID, publishedAt: publishedAt, logger: logger)
            {
                events.append(command)
            }
        }
        var topicsByUser: [String: [String]] = [:]
        let topicRows = try await connection.query("SELECT user_id, topic FROM sse_hub.user_topics", logger: logger)
        for try await (userID, topic) in topicRows.decode((String, String).self) { topicsByUser[userID, default: []].append(topic) }
        try await connection.query("COMMIT", logger: logger)
        let userTopics = topicsByUser.flatMap { UserTopics(userID: $0.key, topics: $0.value).chunks() }
        let cursor = UInt64(head)
        let evictedThrough = events.first.map { $0.sequence - 1 } ?? cursor
        logger.notice(
            "joined the hub's event log",
            metadata: [
                "host": "\(settings.hostID)", "log": "\(identity)", "cursor": "\(cursor)", "retained": "\(events.count)",
                "users": "\(topicsByUser.count)", "event": "log-joined",
            ])
        return SharedLogStart(
            identity: UInt64(identity), events: events, cursor: cursor, evictedThrough: evictedThrough, userTopics: userTopics,
            changeCursor: UInt64(max(0, lastChange)))
    }

    public func append(_ request: PublishRequest) async throws -> UInt64 {
        try await writer.append(request)
    }

    public func record(_ change: UserChange) {
        changes.record(change)
    }

    public func presence(_ subject: PresenceQuery.Subject, after: String?, limit: Int) async throws -> PresencePage {
        try await changesCommitted()
        let presence = presence
        do {
            return try await Deadline.run(within: .seconds(3)) { try await presence.page(subject, after: after, limit: limit) }
        } catch {
            throw SharedLogUnavailable(reason: DatabaseErrorText.describe(error))
        }
    }

    public func changesCommitted() async throws {
        guard await link.isReachable else { throw SharedLogUnavailable(reason: "the database is unreachable") }
        try await changes.committed()
    }

    public func run(hub: SharedLogHub, from cursor: SharedLogCursor) async throws {
        await link.attach(hub)
        let follower = LogFollower(url: settings.url, client: client, link: link, logger: logger)
        let heartbeat = HostHeartbeat(
            client: client, hostID: hostID, link: link, presence: presence,
            retention: LogRetention(
                client: client, size: settings.historySize, ttl: settings.historyTTL, topicGrace: settings.topicGrace, logger: logger),
            logger: logger)
        await withDiscardingTaskGroup { group in
            group.addTask { await self.client.run() }
            await cancelWhenGracefulShutdown {
                await withDiscardingTaskGroup { work in
                    work.addTask { await follower.run(after: cursor, hub: hub) }
                    work.addTask { await heartbeat.run(hub: hub) }
                    work.addTask { await self.changes.run() }
                }
            }
            await heartbeat.leave()
            group.cancelAll()
        }
    }
}
