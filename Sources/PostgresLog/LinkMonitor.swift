import Logging
import SupervisorCore

/// Whether this host can reach the log, as the follower, the writer and the heartbeat find it, and what the other
/// hosts last said; every change of reachability is logged once and told to the control plane (health, STATUS).
///
/// When the link is lost, the heartbeat is asked to probe at once (`probes`): a blip (one connection ended by the
/// server) is over in milliseconds, not at the next heartbeat; publishes are refused only meanwhile.
actor LinkMonitor {
    private var status: SharedLogStatus
    private var hub: SharedLogHub?
    private let logger: Logger
    /// Rings for each heartbeat due: on the heartbeat's clock, and as soon as the link is lost.
    nonisolated let probes: AsyncStream<Void>
    private nonisolated let probe: AsyncStream<Void>.Continuation

    init(hostID: String, logger: Logger) {
        status = SharedLogStatus(hostID: hostID, reachable: true)
        self.logger = logger
        (probes, probe) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    nonisolated func requestProbe() {
        probe.yield()
    }

    var isReachable: Bool { status.reachable }

    func attach(_ hub: SharedLogHub) async {
        self.hub = hub
        await push()
    }

    func succeeded() async {
        if becameReachable() { await push() }
    }

    private func becameReachable() -> Bool {
        guard !status.reachable else { return false }
        status.reachable = true
        status.lastError = nil
        logger.notice("event log reachable again", metadata: ["event": "log-reachable"])
        return true
    }

    func failed(_ error: any Error, while doing: String) async {
        let text = "\(doing): \(DatabaseErrorText.describe(error))"
        guard status.reachable || status.lastError != text else { return }
        let wasReachable = status.reachable
        status.reachable = false
        status.lastError = text
        if wasReachable {
            requestProbe()
            logger.error(
                "event log unreachable: publishes are refused (503) until it is back; streams stay up",
                metadata: ["error": "\(text)", "event": "log-unreachable"])
        }
        await push()
    }

    func heartbeat(hosts: [SharedLogStatus.Host], head: UInt64?) async {
        status.hosts = hosts
        status.head = head
        _ = becameReachable()
        await push()
    }

    private func push() async {
        try? await hub?.statusChanged(status)
    }
}
