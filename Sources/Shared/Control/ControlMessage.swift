import NIOCore

/// Who a publish reaches.
public enum PublishTarget: Sendable, Hashable {
    case everyone
    case topic(String)
    case user(String)
}

/// One event to deliver: the SSE event name and its data, already encoded as compact JSON, with the
/// sequence number the supervisor gave it (its id within the supervisor's epoch) and when it was published.
public struct PublishCommand: Sendable, Hashable {
    public var target: PublishTarget
    public var event: String
    public var data: String
    public var sequence: UInt64
    /// Milliseconds since 1970.
    public var publishedAt: Int64

    public init(target: PublishTarget, event: String, data: String, sequence: UInt64 = 0, publishedAt: Int64 = 0) {
        self.target = target
        self.event = event
        self.data = data
        self.sequence = sequence
        self.publishedAt = publishedAt
    }
}

/// The bounds of the supervisor's history, sent after its entries to a starting worker.
public struct HistoryBounds: Sendable, Hashable {
    public var evictedThrough: UInt64
    public var latestSequence: UInt64

    public init(evictedThrough: UInt64, latestSequence: UInt64) {
        self.evictedThrough = evictedThrough
        self.latestSequence = latestSequence
    }
}

/// What a worker reports about its streams: a delta, not a snapshot, so a report costs what changed and
/// nothing more however many topics the worker holds.
public struct StatsReport: Sendable, Hashable {
    /// Open streams (the whole count).
    public var clients: Int
    /// Each topic whose count of connected subscribers changed since the last report, with its new count
    /// (0: none left). A worker's first report holds every topic it has.
    public var topicCounts: [String: Int]

    public init(clients: Int = 0, topicCounts: [String: Int] = [:]) {
        self.clients = clients
        self.topicCounts = topicCounts
    }
}

/// A user and some of their topics: a change a worker reports, or subscriptions the supervisor restores.
public struct UserTopics: Sendable, Hashable {
    public var userID: String
    public var topics: [String]

    public init(userID: String, topics: [String]) {
        self.userID = userID
        self.topics = topics
    }
}

extension UserTopics {
    /// This change in parts of at most `ControlFrame.maximumListCount` topics: one frame each.
    public func chunks() -> [UserTopics] {
        stride(from: 0, to: max(topics.count, 1), by: ControlFrame.maximumListCount).map { start in
            UserTopics(userID: userID, topics: Array(topics[start..<min(start + ControlFrame.maximumListCount, topics.count)]))
        }
    }
}

extension StatsReport {
    /// This report in parts of at most `ControlFrame.maximumListCount` topics (each with the stream count): one frame each.
    public func chunks() -> [StatsReport] {
        guard topicCounts.count > ControlFrame.maximumListCount else { return [self] }
        let entries = Array(topicCounts)
        return stride(from: 0, to: entries.count, by: ControlFrame.maximumListCount).map { start in
            let part = entries[start..<min(start + ControlFrame.maximumListCount, entries.count)]
            return StatsReport(clients: clients, topicCounts: Dictionary(uniqueKeysWithValues: part.map { ($0.key, $0.value) }))
        }
    }
}

/// The first message a worker sends once it serves.
public struct WorkerHello: Sendable, Hashable {
    public var shard: Int
    public var pid: Int32

    public init(shard: Int, pid: Int32) {
        self.shard = shard
        self.pid = pid
    }
}

/// A question about who is online (`GET /api/sse/presence`), put to the workers that hold the answer: about one
/// topic's subscribers that have a live stream, or about one user.
public struct PresenceQuery: Sendable, Hashable {
    public enum Subject: Sendable, Hashable {
        case topic(String)
        case user(String)
    }

    /// The supervisor's number for it, which the answer carries back.
    public var id: UInt64
    public var subject: Subject
    /// Names (users of a topic, topics of a user) after this one only, in `<` order: the page's cursor.
    public var after: String?
    public var limit: Int

    public init(id: UInt64, subject: Subject, after: String?, limit: Int) {
        self.id = id
        self.subject = subject
        self.after = after
        self.limit = limit
    }
}

/// One worker's answer to a `PresenceQuery`.
public struct PresenceAnswer: Sendable, Hashable {
    public var id: UInt64
    /// A topic: its subscribers with a live stream on this worker, in `<` order, after the cursor, at most `limit`.
    /// A user: their topics, likewise.
    public var names: [String]
    /// A topic: each of those users' live streams here. A user: empty.
    public var counts: [UInt32]
    /// A user: their live streams here, and when the oldest opened (milliseconds since 1970; 0 without one).
    public var streams: UInt32
    public var since: Int64
    /// Whether this worker has more names after the last.
    public var more: Bool

    public init(id: UInt64, names: [String], counts: [UInt32] = [], streams: UInt32 = 0, since: Int64 = 0, more: Bool) {
        self.id = id
        self.names = names
        self.counts = counts
        self.streams = streams
        self.since = since
        self.more = more
    }
}

/// One of a user's streams on a host, named by when it went live there (milliseconds since 1970, by that host's
/// clock; kept when a reload moves it to a new worker). A hub across hosts counts and ends streams by these names.
/// `openedAt` 0 names none: a peer of protocol version 5 or older, which meant every stream of the user there.
public struct UserStream: Sendable, Hashable {
    public var userID: String
    public var openedAt: Int64

    public init(userID: String, openedAt: Int64) {
        self.userID = userID
        self.openedAt = openedAt
    }

    /// Every stream of the user (an older peer's name).
    public static func every(of userID: String) -> UserStream { UserStream(userID: userID, openedAt: 0) }
    public var isEvery: Bool { openedAt == 0 }
}

/// What a worker counted since it started, for the host's metrics: cumulative, so a report lost with a dying worker
/// loses nothing already reported, and the supervisor adds the difference from the last one (protocol version 6 on).
public struct WorkerCounters: Sendable, Hashable {
    /// Event frames written to live streams, and their bytes with every opening and replay.
    public var eventsDelivered: UInt64 = 0
    public var bytesWritten: UInt64 = 0
    /// Streams ended because their client stopped reading (`--max-pending-bytes`).
    public var slowConsumersDropped: UInt64 = 0
    /// Streams opened with a `Last-Event-ID`: replayed from the history, or told `reset`.
    public var resumes: UInt64 = 0
    public var resets: UInt64 = 0

    public init(
        eventsDelivered: UInt64 = 0, bytesWritten: UInt64 = 0, slowConsumersDropped: UInt64 = 0, resumes: UInt64 = 0, resets: UInt64 = 0
    ) {
        self.eventsDelivered = eventsDelivered
        self.bytesWritten = bytesWritten
        self.slowConsumersDropped = slowConsumersDropped
        self.resumes = resumes
        self.resets = resets
    }
}

/// The messages supervisor and workers exchange over a worker's control socket.
///
/// Subscriptions belong to users, not to worker processes: a worker reports every change (`subscribed`,
/// `unsubscribed`, `forgotten`) and the supervisor keeps them, so that a worker that starts (after a crash, or
/// to replace one on reload) gets its users' topics (`restoreTopics`) before its history, like the history.
public enum ControlMessage: Sendable, Hashable {
    // worker → supervisor
    case hello(WorkerHello)
    case stats(StatsReport)
    case pong(UInt64)
    /// A user took these topics (only the ones new to them).
    case subscribed(UserTopics)
    /// A user dropped these topics (only the ones they had).
    case unsubscribed(UserTopics)
    /// A user's grace period ran out with no stream: the worker forgot them and their topics.
    case forgotten(String)
    /// A retiring worker has passed on every stream.
    case migrationDone
    /// A stream went live here (a hub across hosts, `--hub-wide-users`: the hub counts the user's streams, ends the
    /// oldest past `--max-streams-per-user` wherever it is, and knows who is online).
    case streamOpened(UserStream)
    /// A stream here closed (from protocol version 6; before, `.every`: the user had no stream here any more).
    case streamClosed(UserStream)
    /// Answer `changesLogged` once every change this worker reported before this message is in the hub's log
    /// (`--hub-wide-users`): a subscribe is answered only when every host will apply it before a later publish.
    case awaitChangesLogged(UInt64)
    /// The answer to a `presenceQuery` (protocol version 5 on).
    case presenceAnswer(PresenceAnswer)
    /// A user came online (their first stream here opened) or went offline (their last closed, and none opened within
    /// `--presence-grace`): with `--presence-events`, the supervisor publishes it to the user's topics.
    case presenceChanged(String, online: Bool)
    /// The worker's counters (protocol version 6 on), every second while they change.
    case counters(WorkerCounters)
    // supervisor → worker
    case publish(PublishCommand)
    /// An event from before the worker started, for its replay history only (not delivered live).
    case historyEntry(PublishCommand)
    /// The history is complete: the worker may now attach streams.
    case historyEnd(HistoryBounds)
    /// A user's topics the worker takes as its own without reporting them back (a restart, a reload, or a
    /// change a retiring worker made at the last moment).
    case restoreTopics(UserTopics)
    /// Topics a user dropped on a retiring worker at the last moment: the worker drops them too, unreported.
    case dropTopics(UserTopics)
    case ping(UInt64)
    /// Stop taking work and exit once the streams are closed.
    case shutdown
    /// The hub ended this stream (newer ones opened on other hosts past `--max-streams-per-user`): end it here with
    /// `replaced`. `.every` (a worker of protocol version 5 or older): every stream of the user here.
    case endStream(UserStream)
    /// Who is online, as far as this worker knows (protocol version 5 on).
    case presenceQuery(PresenceQuery)
    /// The answer to `awaitChangesLogged`: whether the changes are committed to the hub's log (false: the log is
    /// unreachable; they stay applied here and reach the other hosts once it is back).
    case changesLogged(UInt64, committed: Bool)
    /// Pass every live stream (descriptor, expiry, last sequence written) back over the hand-off socket, then
    /// report `migrationDone`: a reload is replacing this worker.
    case migrate
}
