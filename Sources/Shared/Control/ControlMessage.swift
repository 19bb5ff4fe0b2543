import NIOCore

/// Who a publish reaches.
public enum PublishTarget: Sendable, Hashable {
    case everyone
    case topic(String)
    case user(String)
}

/// One event to deliver: the SSE event name and its data, already encoded as compact JSON.
public struct PublishCommand: Sendable, Hashable {
    public var target: PublishTarget
    public var event: String
    public var data: String

    public init(target: PublishTarget, event: String, data: String) {
        self.target = target
        self.event = event
        self.data = data
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
    // supervisor → worker
    case publish(PublishCommand)
    case ping(UInt64)
    /// Stop taking work and exit once the streams are closed.
    case shutdown
}
