import Logging
import PostgresNIO
import Shared
import SupervisorCore

/// Who is online in the whole hub, from `sse_hub.live_streams` (schema version 2): the presence API's pages, the
/// offline announcements once a user's `--presence-grace` runs out, and a host's streams dropped from the count when it
/// starts afresh or leaves. Streams of hosts whose heartbeat is older than `hostTimeout` are not counted (the host
/// died or lost the database; they count again if it comes back, and go when it restarts).
struct HubPresence: Sendable {
    let client: PostgresClient
    let hostID: String
    let logger: Logger
    /// `--presence-events` with this grace; nil: no presence events.
    let grace: Duration?
    var hostTimeout: Duration = .seconds(10)

    /// One page, after `after` in byte order: a topic's users with a live stream and their stream counts, or a user's
    /// topics with their stream count and oldest stream.
    func page(_ subject: PresenceQuery.Subject, after: String?, limit: Int) async throws -> PresencePage {
        let (cursor, fetch, timeout) = (after ?? "", Int64(limit) + 1, Double(hostTimeout.components.seconds))
        var page = PresencePage()
        switch subject {
        case .topic(let topic):
            let rows = try await client.query(
                """
                SELECT t.user_id, count(*)::int8 FROM sse_hub.user_topics t
                JOIN sse_hub.live_streams s ON s.user_id = t.user_id
                JOIN sse_hub.hosts h ON h.host_id = s.host_id AND h.heartbeat_at > now() - make_interval(secs => \(timeout))
                WHERE t.topic = \(topic) AND t.user_id COLLATE "C" > \(cursor)
                GROUP BY t.user_id ORDER BY t.user_id COLLATE "C" LIMIT \(fetch)
                """, logger: logger)
            for try await (userID, streams) in rows.decode((String, Int64).self) {
                page.names.append(userID)
                page.counts.append(UInt32(clamping: streams))
            }
        case .user(let userID):
            let streams = try await client.query(
                """
                SELECT count(*)::int8, min(s.opened_at) FROM sse_hub.live_streams s
                JOIN sse_hub.hosts h ON h.host_id = s.host_id AND h.heartbeat_at > now() - make_interval(secs => \(timeout))
                WHERE s.user_id = \(userID)
                """, logger: logger)
            for try await (count, oldest) in streams.decode((Int64, Int64?).self) {
                page.streams = UInt32(clamping: count)
                page.since = oldest
            }
            let topics = try await client.query(
                """
                SELECT topic FROM sse_hub.user_topics WHERE user_id = \(userID) AND topic COLLATE "C" > \(cursor)
                ORDER BY topic COLLATE "C" LIMIT \(fetch)
                """, logger: logger)
            for try await topic in topics.decode(String.self) { page.names.append(topic) }
        }
        if page.names.count > limit {
            page.names.removeLast(page.names.count - limit)
            if !page.counts.isEmpty { page.counts.removeLast(page.counts.count - limit) }
            page.nextCursor = page.names.last
        }
        return page
    }

    /// Publishes `presence` `online: false` for the users whose grace ran out with no stream anywhere; any host may
    /// (the database hands each user to one).
    func announceOffline() async throws {
        guard let grace else { return }
        let seconds = Double(grace.components.seconds)
        let rows = try await client.query("SELECT sse_hub.announce_offline(\(seconds), 1000)", logger: logger)
        let announced = try await rows.single(Int32.self) ?? 0
        if announced > 0 { logger.debug("users went offline", metadata: ["users": "\(announced)", "event": "presence-offline"]) }
    }

    /// This host's streams are all gone from the hub's count: it leaves.
    func dropThisHostsStreams(on connection: PostgresConnection) async throws {
        try await Self.dropStreams(of: hostID, presenceEvents: grace != nil, on: connection, logger: logger)
    }

    /// A host's streams are all gone from the hub's count: it starts afresh (none survived its last run) or leaves.
    static func dropStreams(of hostID: String, presenceEvents: Bool, on connection: PostgresConnection, logger: Logger) async throws {
        let rows = try await connection.query("SELECT sse_hub.streams_lost(\(hostID), NULL, \(presenceEvents))", logger: logger)
        let users = try await rows.single(Int32.self) ?? 0
        if users > 0 {
            logger.info(
                "dropped this host's streams of its last run from the hub's count", metadata: ["users": "\(users)", "event": "streams-dropped"])
        }
    }
}
