import Logging
import NIOCore
import Shared

/// What the supervisor tells systemd (`Type=notify`), driven by the control plane's events: `READY=1` when every
/// shard is first up, a `STATUS=` line that follows the shards (at most once a second), `WATCHDOG=1` while every
/// worker answers its pings, `STOPPING=1` when shutdown begins. On the plane's event loop.
struct ServiceManagerLink {
    private let logger: Logger
    private let statusInterval: Duration
    private var ready = false
    private var status = ""
    private var statusSentAt: ContinuousClock.Instant?
    private var statusScheduled = false
    /// The watchdog's last turn found a worker silent: it is fed as soon as every worker answers again, not a
    /// whole interval later (which could be past the unit's `WatchdogSec`).
    private var watchdogOwed = false

    init(logger: Logger, statusInterval: Duration = .seconds(1)) {
        self.logger = logger
        self.statusInterval = statusInterval
    }

    /// The previous program of this process said READY already (an in-place upgrade): this one says it again only
    /// when the reload that upgraded it is done.
    mutating func continuesAfterUpgrade() {
        ready = true
    }

    /// A shard or the counts changed: READY once all are up, then STATUS when it reads differently.
    mutating func shardsChanged(_ plane: ControlPlane) {
        let summary = Self.summary(plane)
        if !ready, !plane.shuttingDown, plane.shards.allSatisfy({ $0.state.name == .up }) {
            ready = true
            (status, statusSentAt) = (summary, .now)
            SystemdNotifier.notify(.ready, .status(summary))
            logger.info("all workers up", metadata: ["event": "ready"])
            return
        }
        guard ready, summary != status else { return }
        if let sentAt = statusSentAt, ContinuousClock.now - sentAt < statusInterval {
            guard !statusScheduled else { return }
            statusScheduled = true
            let bound = plane.bound
            plane.eventLoop.scheduleTask(in: TimeAmount(statusInterval - (ContinuousClock.now - sentAt))) {
                bound.value.serviceManager.statusScheduled = false
                bound.value.serviceManager.shardsChanged(bound.value)
            }
            return
        }
        send(summary)
    }

    private mutating func send(_ summary: String) {
        status = summary
        statusSentAt = .now
        SystemdNotifier.notify(.status(summary))
    }

    /// Feeds systemd's watchdog (when the unit has one) every half of its timeout while every worker answers its
    /// pings; after a turn that found one silent, at the first moment all answer again (`workerAnswered`).
    func startWatchdog(_ plane: ControlPlane) {
        guard let timeout = SystemdNotifier.watchdogTimeout else { return }
        logger.info("systemd watchdog enabled", metadata: ["interval": "\(timeout / 2)"])
        let bound = plane.bound
        plane.eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: TimeAmount(timeout / 2)) { _ in
            let plane = bound.value
            plane.serviceManager.watchdogOwed = true
            plane.serviceManager.workerAnswered(plane)
        }
    }

    /// A worker answered (a pong, a hello) or a silent one was reaped: feeds the watchdog if it is owed and every
    /// worker now answers.
    mutating func workerAnswered(_ plane: ControlPlane) {
        guard watchdogOwed, plane.everyWorkerAnswered(within: plane.settings.liveness.unanswered) else { return }
        watchdogOwed = false
        SystemdNotifier.notify(.watchdog)
    }

    func stopping() {
        SystemdNotifier.notify(.stopping, .status("stopping: ending streams and workers"))
    }

    /// `3/3 workers up, 12 clients, 4 topics`.
    static func summary(_ plane: ControlPlane) -> String {
        let up = plane.shards.filter { $0.state.name == .up }.count
        let summary = "\(up)/\(plane.shards.count) workers up, \(plane.stats.totalClients) clients, \(plane.stats.topics.count) topics"
        guard let log = plane.logStatus else { return summary }
        return summary + (log.reachable ? ", event log up" : ", event log UNREACHABLE")
    }
}
