import CoreMetrics
import Shared
import Synchronization

/// What this host counts, for `/metrics` (through swift-metrics, exported by the factory given: Prometheus with
/// `--metrics-listen`, nothing otherwise) and for the status page, which reads the totals (`Tally`). Made once, before
/// anything serves: every handle is looked up here, so the accept thread and the control plane only increment.
/// Names follow Prometheus' conventions (`_total` counters, units in names); `docs/operations.md` lists them.
public final class HostMetrics: Sendable {
    /// A counter whose total this process can read back (the status page shows totals; a metrics handle is
    /// write-only).
    public final class Tally: Sendable {
        private let counter: Counter
        private let count = Atomic<Int>(0)

        init(_ label: String, _ dimensions: [(String, String)] = [], factory: any MetricsFactory) {
            counter = Counter(label: label, dimensions: dimensions, factory: factory)
        }

        public func increment(by amount: Int = 1) {
            guard amount > 0 else { return }
            counter.increment(by: amount)
            count.add(amount, ordering: .relaxed)
        }

        public var total: Int { count.load(ordering: .relaxed) }
    }

    /// Why a connection was answered by the supervisor instead of reaching a worker.
    public enum Refusal: String, CaseIterable, Sendable {
        case badToken = "bad_token", badRequest = "bad_request", headTimeout = "head_timeout", headTooLarge = "head_too_large"
        case clientLimit = "client_limit", workerUnavailable = "worker_unavailable"
    }

    public enum PublishKind: String, CaseIterable, Sendable {
        case broadcast, topic, user
        /// A body refused before its target could be read.
        case unknown

        public init(_ target: PublishTarget) {
            switch target {
            case .everyone: self = .broadcast
            case .topic: self = .topic
            case .user: self = .user
            }
        }
    }

    public enum PublishResult: String, CaseIterable, Sendable {
        case accepted, refused, unavailable
    }

    public enum RestartCause: String, CaseIterable, Sendable {
        /// Killed by a signal it did not ask for (a crash, the OOM killer).
        case crashed
        /// Silent past `--worker-hang-timeout`: killed by the supervisor.
        case hung
        /// Exited by itself.
        case exited
    }

    public let connectionsAccepted: Tally
    /// Turns after which the accept thread let connections gather (`--accept-batch-us`).
    public let acceptBatchWaits: Tally
    private let refusals: [Refusal: Tally]
    /// From accept to the descriptor passed to the worker.
    public let handoffDuration: Timer
    private let publishTallies: [String: Tally]
    public let eventsDelivered: Tally
    public let bytesWritten: Tally
    public let slowConsumersDropped: Tally
    public let resumes: Tally
    public let resets: Tally
    public let reloads: Tally
    public let upgrades: Tally
    private let restartTallies: [RestartCause: Tally]
    public let streamsOpen: Gauge
    private let workerStreams: [Gauge]
    private let workerMemory: [Gauge]
    public let workersUp: Gauge
    public let historyEvents: Gauge
    public let logLag: Gauge

    public init(shardCount: Int, factory: any MetricsFactory) {
        connectionsAccepted = Tally("sse_hub_connections_accepted_total", factory: factory)
        acceptBatchWaits = Tally("sse_hub_accept_batch_waits_total", factory: factory)
        refusals = Dictionary(
            uniqueKeysWithValues: Refusal.allCases.map {
                ($0, Tally("sse_hub_connections_refused_total", [("reason", $0.rawValue)], factory: factory))
            })
        handoffDuration = Timer(label: "sse_hub_handoff_duration_seconds", factory: factory)
        var publishes: [String: Tally] = [:]
        for kind in PublishKind.allCases {
            for result in PublishResult.allCases {
                publishes[Self.key(kind, result)] = Tally(
                    "sse_hub_publishes_total", [("kind", kind.rawValue), ("result", result.rawValue)], factory: factory)
            }
        }
        publishTallies = publishes
        eventsDelivered = Tally("sse_hub_events_delivered_total", factory: factory)
        bytesWritten = Tally("sse_hub_bytes_written_total", factory: factory)
        slowConsumersDropped = Tally("sse_hub_slow_consumers_dropped_total", factory: factory)
        resumes = Tally("sse_hub_resumes_total", factory: factory)
        resets = Tally("sse_hub_resets_total", factory: factory)
        reloads = Tally("sse_hub_reloads_total", factory: factory)
        upgrades = Tally("sse_hub_upgrades_total", factory: factory)
        restartTallies = Dictionary(
            uniqueKeysWithValues: RestartCause.allCases.map {
                ($0, Tally("sse_hub_worker_restarts_total", [("cause", $0.rawValue)], factory: factory))
            })
        streamsOpen = Gauge(label: "sse_hub_streams_open", factory: factory)
        workerStreams = (0..<shardCount).map { Gauge(label: "sse_hub_worker_streams_open", dimensions: [("worker", "\($0)")], factory: factory) }
        workerMemory = (0..<shardCount).map {
            Gauge(label: "sse_hub_worker_resident_bytes", dimensions: [("worker", "\($0)")], factory: factory)
        }
        workersUp = Gauge(label: "sse_hub_workers_up", factory: factory)
        historyEvents = Gauge(label: "sse_hub_history_events", factory: factory)
        logLag = Gauge(label: "sse_hub_log_lag_events", factory: factory)
    }

    /// Counts nothing anywhere: the embedded default without `--metrics-listen`, and unit tests.
    public static func unexported(shardCount: Int) -> HostMetrics {
        HostMetrics(shardCount: shardCount, factory: NOOPMetricsHandler.instance)
    }

    private static func key(_ kind: PublishKind, _ result: PublishResult) -> String { "\(kind.rawValue)/\(result.rawValue)" }

    public func refused(_ reason: Refusal) { refusals[reason]!.increment() }
    public var refusedTotal: Int { refusals.values.reduce(0) { $0 + $1.total } }

    public func published(_ kind: PublishKind, _ result: PublishResult) { publishTallies[Self.key(kind, result)]!.increment() }
    public var publishesAccepted: Int { PublishKind.allCases.reduce(0) { $0 + publishTallies[Self.key($1, .accepted)]!.total } }

    public func workerRestarted(_ cause: RestartCause) { restartTallies[cause]!.increment() }
    public var workerRestarts: Int { restartTallies.values.reduce(0) { $0 + $1.total } }

    public func workerStreams(_ shard: Int, _ streams: Int) {
        guard workerStreams.indices.contains(shard) else { return }
        workerStreams[shard].record(streams)
    }

    public func workerMemory(_ shard: Int, bytes: Int) {
        guard workerMemory.indices.contains(shard) else { return }
        workerMemory[shard].record(bytes)
    }
}
