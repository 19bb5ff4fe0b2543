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

/// What a worker reports about the streams it serves.
public struct WorkerStats: Sendable, Hashable {
    /// Open streams.
    public var clients: Int
    /// Each topic with at least one connected subscriber, and how many.
    public var topics: [String: Int]

    public init(clients: Int = 0, topics: [String: Int] = [:]) {
        self.clients = clients
        self.topics = topics
    }
}

/// A user without a live stream, moving to a new worker on reload: topics outlive streams for a grace period.
public struct MigratedUser: Sendable, Hashable {
    public var userID: String
    public var topics: [String]

    public init(userID: String, topics: [String]) {
        self.userID = userID
        self.topics = topics
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

/// The messages supervisor and workers exchange over a worker's control socket.
public enum ControlMessage: Sendable, Hashable {
    // worker → supervisor
    case hello(WorkerHello)
    case stats(WorkerStats)
    case pong(UInt64)
    /// A retiring worker passes on a user without a stream (forwarded by the supervisor to the new worker).
    case migratedUser(MigratedUser)
    /// A retiring worker has passed on every stream and user.
    case migrationDone
    // supervisor → worker
    case publish(PublishCommand)
    /// An event from before the worker started, for its replay history only (not delivered live).
    case historyEntry(PublishCommand)
    /// The history is complete: the worker may now attach streams.
    case historyEnd(HistoryBounds)
    case ping(UInt64)
    /// Stop taking work and exit once the streams are closed.
    case shutdown
    /// Pass every live stream (descriptor and state) back over the hand-off socket, then every user with
    /// topics over the control channel, then report `migrationDone`: a reload is replacing this worker.
    case migrate
}
