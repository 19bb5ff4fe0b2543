import Logging
import ServiceLifecycle
import Shared

/// What the supervisor tells systemd (`Type=notify`): `READY=1` once every worker is up, a `STATUS=` line
/// that follows the pool (at most once a second), `WATCHDOG=1` while every worker answers its pings, and
/// `STOPPING=1` when shutdown begins. Listed last in the service group, so it is the first to hear of shutdown.
struct ServiceManagerLink: Service {
    let pool: WorkerPool
    let liveness: WorkerLiveness.Policy
    let logger: Logger
    /// How often the pool is looked at: READY=1 goes out within this of the last worker's hello.
    var tick: Duration = .milliseconds(100)
    var statusInterval: Duration = .seconds(1)

    func run() async throws {
        // systemd expects a ping at least every timeout; half of it leaves room for a late tick.
        let watchdogInterval = SystemdNotifier.watchdogTimeout.map { $0 / 2 }
        if let watchdogInterval { logger.info("systemd watchdog enabled", metadata: ["interval": "\(watchdogInterval)"]) }
        try? await cancelWhenGracefulShutdown {
            var ready = false
            var status = ""
            var statusSent = ContinuousClock.now - statusInterval
            var fed = ContinuousClock.now - (watchdogInterval ?? .zero)
            while !Task.isCancelled {
                let now = ContinuousClock.now
                let slots = pool.slots
                let summary = Self.summary(slots, totals: pool.totals)
                if !ready, slots.allSatisfy({ $0.status == .up }) {
                    ready = true
                    (status, statusSent) = (summary, now)
                    SystemdNotifier.notify(.ready, .status(summary))
                    logger.info("all workers up", metadata: ["event": "ready"])
                } else if summary != status, now - statusSent >= statusInterval {
                    (status, statusSent) = (summary, now)
                    SystemdNotifier.notify(.status(summary))
                }
                if let watchdogInterval, now - fed >= watchdogInterval, pool.everyWorkerAnswered(within: liveness.unanswered) {
                    fed = now
                    SystemdNotifier.notify(.watchdog)
                }
                try await Task.sleep(for: tick)
            }
        }
        SystemdNotifier.notify(.stopping, .status("stopping: ending streams and workers"))
    }

    /// `3/3 workers up, 12 clients, 4 topics`.
    static func summary(_ slots: [WorkerPool.Slot], totals: (clients: Int, topics: Int)) -> String {
        let up = slots.filter { $0.status == .up }.count
        return "\(up)/\(slots.count) workers up, \(totals.clients) clients, \(totals.topics) topics"
    }
}
