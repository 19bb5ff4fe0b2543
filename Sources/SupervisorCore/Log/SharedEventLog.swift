import NIOCore
import Shared

/// The event log several hosts share (`--postgres-url`): what the supervisor needs of it, apart from the database
/// driver (the `PostgresLog` module), so that the embedded default links none.
///
/// With a shared log the supervisor gives no id itself: a publish is appended to the log (`append`, answered once
/// committed), and every host delivers what the log holds, in its order, as the log's follower reads it
/// (`SharedLogHub.deliver`). The log's position is the event's sequence, its identity the epoch.
public protocol SharedEventLog: Sendable {
    /// This host's name in the hub (`--host-id`).
    var hostID: String { get }
    /// Appends a publish and returns its position once committed. Throws `SharedLogUnavailable` when the log
    /// cannot confirm it: the publisher hears 503, never a success for an event that may be lost.
    func append(_ request: PublishRequest) async throws -> UInt64
    /// Records a change of a user's state made on this host (a worker reported it), for every host to apply in the
    /// log's order. Returns at once; the log keeps trying while the database is away (in order, bounded).
    func record(_ change: UserChange)
    /// Returns once every change recorded before the call is committed to the log, so every host applies them before
    /// any event published after. Throws `SharedLogUnavailable` at once while the log is unreachable, or when the
    /// write fails (the changes stay queued and are written once it is back).
    func changesCommitted() async throws
    /// Who is online in the whole hub, as the log holds it once this host's changes so far are in: one page of a
    /// topic's users with a live stream anywhere, or of one user's topics with their streams. Throws
    /// `SharedLogUnavailable` while the database cannot answer.
    func presence(_ subject: PresenceQuery.Subject, after: String?, limit: Int) async throws -> PresencePage
    /// Follows the log after `cursor` (delivering to `hub`), beats this host's heartbeat and sweeps retention, until
    /// graceful shutdown; then leaves the hub.
    func run(hub: SharedLogHub, from cursor: SharedLogCursor) async throws
}

/// A change of a user's state made on one host, for the hub: a user is one user across hosts.
public enum UserChange: Sendable, Hashable {
    /// Topics the user took (on the host that wrote it).
    case subscribed(UserTopics)
    case unsubscribed(UserTopics)
    /// A stream went live on the host that wrote it, held by its worker `shard`. The hub counts it (and ends the
    /// user's oldest past `--max-streams-per-user`, wherever it is: `replaced`).
    case streamOpened(UserStream, shard: Int)
    /// A stream closed on the host that wrote it (`.every`: every stream of the user there).
    case streamClosed(UserStream)
    /// Every stream that the host's worker `shard` held is gone (it died): the hub stops counting them.
    case streamsLost(shard: Int)
    /// The hub ended this stream: the user opened newer ones past the limit. The log entry's host is the one that
    /// holds it (written by the database, never by a host).
    case replaced(UserStream)
    /// The grace of a user with no stream anywhere ran out (written by the database's sweep).
    case forgotten(userID: String)
}

/// What the log's follower reads, in the log's order: events, and the user changes made between them.
public enum SharedLogEntry: Sendable, Hashable {
    case event(PublishCommand)
    /// A user change, and the host that wrote it (empty for the database's own sweep).
    case userChange(UserChange, hostID: String)
}

/// Where the log stood when this host joined: the epoch of its ids, and its retained tail for the history.
public struct SharedLogStart: Sendable {
    public var identity: UInt64
    /// The retained events, oldest first (within this host's history bounds).
    public var events: [PublishCommand]
    /// The last position given when the tail was read: the follower continues after it.
    public var cursor: UInt64
    /// The highest position no longer held (retention): a client that last saw an id below it gets `reset`.
    public var evictedThrough: UInt64
    /// Every user's topics, as the hub holds them.
    public var userTopics: [UserTopics]
    /// The last user change applied to `userTopics`.
    public var changeCursor: UInt64

    public init(
        identity: UInt64, events: [PublishCommand], cursor: UInt64, evictedThrough: UInt64, userTopics: [UserTopics] = [],
        changeCursor: UInt64 = 0
    ) {
        self.identity = identity
        self.events = events
        self.cursor = cursor
        self.evictedThrough = evictedThrough
        self.userTopics = userTopics
        self.changeCursor = changeCursor
    }

    public var logCursor: SharedLogCursor { SharedLogCursor(event: cursor, change: changeCursor) }
}

/// A position in the shared log: the last event and the last user change read.
public struct SharedLogCursor: Sendable, Equatable {
    public var event: UInt64
    public var change: UInt64

    public init(event: UInt64, change: UInt64) {
        self.event = event
        self.change = change
    }
}

/// A publish the log could not confirm (the database is unreachable, or did not answer in time).
public struct SharedLogUnavailable: Error, CustomStringConvertible {
    public var reason: String
    public init(reason: String) { self.reason = reason }
    public var description: String { "the event log is unavailable: \(reason)" }
}

/// How this host's link to the log is, and what the other hosts last said: health and stats read it.
public struct SharedLogStatus: Sendable, Equatable {
    public struct Host: Sendable, Equatable {
        public var hostID: String
        /// How long ago the host last beat, by the database's clock when it was read.
        public var heartbeatAgeMilliseconds: Int64
        public var cursor: UInt64
        public var clients: Int
        public var topics: [String: Int]

        public init(
            hostID: String, heartbeatAgeMilliseconds: Int64, cursor: UInt64, clients: Int, topics: [String: Int]
        ) {
            self.hostID = hostID
            self.heartbeatAgeMilliseconds = heartbeatAgeMilliseconds
            self.cursor = cursor
            self.clients = clients
            self.topics = topics
        }
    }

    public var hostID: String
    /// Whether the last exchange with the database succeeded.
    public var reachable: Bool
    public var lastError: String?
    /// Every host with a recent heartbeat (this one too), as the database last listed them.
    public var hosts: [Host]
    /// The log's last position when the database last said (`sse_hub_log_lag_events` is how far behind it this host is).
    public var head: UInt64?

    public init(hostID: String, reachable: Bool, lastError: String? = nil, hosts: [Host] = []) {
        self.hostID = hostID
        self.reachable = reachable
        self.lastError = lastError
        self.hosts = hosts
    }
}

/// This host's counts, for its heartbeat row.
public struct LocalHostStats: Sendable {
    public var clients: Int
    public var topics: [String: Int]
    public var cursor: UInt64
}

/// What the log's follower and heartbeat may ask of the control plane; each call hops onto the plane's loop.
public struct SharedLogHub: Sendable {
    let plane: NIOLoopBound<ControlPlane>

    /// Delivers events read from the log, in order (positions at or below what was delivered are skipped, so a
    /// re-read after a reconnect delivers nothing twice).
    public func deliver(_ entries: [SharedLogEntry], through cursor: SharedLogCursor) async throws {
        try await plane.eventLoop.submit { [plane] in plane.value.deliverFromLog(entries, through: cursor) }.get()
    }

    public func localStats() async throws -> LocalHostStats {
        try await plane.eventLoop.submit { [plane] in
            let plane = plane.value
            return LocalHostStats(clients: plane.stats.totalClients, topics: plane.stats.topics, cursor: plane.history.latestSequence)
        }.get()
    }

    public func statusChanged(_ status: SharedLogStatus) async throws {
        try await plane.eventLoop.submit { [plane] in plane.value.sharedLogStatusChanged(status) }.get()
    }
}
