/// What the state machine needs to know of a worker process: which start of its shard it is. A worker's own
/// events (hello, exit, migration done) carry the generation, so a late event from an earlier worker of the
/// shard can never move the shard's current one.
public protocol ShardWorker {
    var generation: Int { get }
}

/// One shard, as the supervisor's control plane sees it. Each case holds exactly what is true in it, so a
/// shard cannot be, say, up without a worker or replacing without a successor; `ShardMachine` moves it on.
public enum ShardState<Worker: ShardWorker> {
    /// Not started yet (before the supervisor runs).
    case idle
    /// No worker: the next is started at `restartAt` (by then the spawn is scheduled).
    case down(Down)
    /// A worker was spawned and has not said hello: connections wait, publishes wait in the history.
    case starting(Running<Worker>)
    /// The worker has the history and serves: connections and publishes reach it.
    case up(Running<Worker>)
    /// A reload: `retiring` keeps serving the streams it holds until `successor` is up, then passes them to it.
    case replacing(Replacing<Worker>)
    /// Shutting down: these workers were told to stop and have not exited yet. Nothing restarts.
    case stopping([Worker])
    /// Shut down, every worker gone.
    case stopped

    public var name: ShardStateName {
        switch self {
        case .idle: .idle
        case .down: .down
        case .starting: .starting
        case .up: .up
        case .replacing: .replacing
        case .stopping: .stopping
        case .stopped: .stopped
        }
    }

    /// The worker connections and publishes go to: the one that is up, or a reload's successor once it is.
    public var serving: Worker? {
        switch self {
        case .up(let running): running.worker
        case .replacing(let replacing): replacing.successor.serving
        default: nil
        }
    }

    /// The shard's newest worker: the one starting or up, or a reload's successor (never the retiring one). Its
    /// counts are the shard's, and it is the one pinged.
    public var newest: Worker? {
        switch self {
        case .starting(let running), .up(let running): running.worker
        case .replacing(let replacing): replacing.successor.worker
        default: nil
        }
    }

    /// Every live worker process of the shard (a reload has two).
    public var workers: [Worker] {
        switch self {
        case .idle, .down, .stopped: []
        case .starting(let running), .up(let running): [running.worker]
        case .replacing(let replacing): [replacing.retiring] + (replacing.successor.worker.map { [$0] } ?? [])
        case .stopping(let workers): workers
        }
    }

    /// The shard serves clients: its worker is up, or a reload is replacing it (the retiring one still serves).
    public var isServing: Bool {
        switch self {
        case .up, .replacing: true
        default: false
        }
    }

    /// The state a health report shows for the shard's newest worker: `up`, `starting` or `down`.
    public var healthName: ShardStateName {
        switch self {
        case .replacing(let replacing): replacing.successor.name
        case .idle: .down
        default: name
        }
    }
}

public enum ShardStateName: String, Sendable, Equatable, CaseIterable {
    case idle, down, starting, up, replacing, stopping, stopped
}

/// No worker, and when the next one starts.
public struct Down: Sendable, Equatable {
    public var restartAt: ContinuousClock.Instant
    /// Failures in a row so far (0 before the first start): the back-off grows with it.
    public var failures: Int

    public init(restartAt: ContinuousClock.Instant, failures: Int) {
        self.restartAt = restartAt
        self.failures = failures
    }
}

/// A worker process that runs (starting or up), with the failures in a row that preceded it.
public struct Running<Worker: ShardWorker> {
    public var worker: Worker
    public var failures: Int

    public init(worker: Worker, failures: Int) {
        self.worker = worker
        self.failures = failures
    }
}

/// A reload replacing a shard's worker.
public struct Replacing<Worker: ShardWorker> {
    public enum Phase: Sendable, Equatable {
        /// The successor is not up yet: the retiring worker serves its streams on.
        case awaitingSuccessor
        /// The retiring worker was told to pass its streams to the successor.
        case passingStreams
        /// The retiring worker has passed everything (or ran out of time) and was told to stop.
        case stopping
    }

    public var retiring: Worker
    public var phase: Phase
    public var successor: Successor<Worker>
}

/// The worker a reload starts in place of the retiring one: it lives through the same down, starting and up as
/// any other (and is restarted with the same back-off if it dies).
public enum Successor<Worker: ShardWorker> {
    case down(Down)
    case starting(Running<Worker>)
    case up(Running<Worker>)

    var name: ShardStateName {
        switch self {
        case .down: .down
        case .starting: .starting
        case .up: .up
        }
    }

    var worker: Worker? {
        switch self {
        case .down: nil
        case .starting(let running), .up(let running): running.worker
        }
    }

    var serving: Worker? {
        if case .up(let running) = self { running.worker } else { nil }
    }

    /// The plain state the shard is in once the retiring worker is gone.
    var asShardState: ShardState<Worker> {
        switch self {
        case .down(let down): .down(down)
        case .starting(let running): .starting(running)
        case .up(let running): .up(running)
        }
    }
}
