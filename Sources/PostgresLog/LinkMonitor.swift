import Logging
import SupervisorCore

/// Whether this host can reach the log, as the follower, the writer and the heartbeat find it, and what the other
/// hosts last said; every change of reachability is logged once and told to the control plane (health, STATUS).
actor LinkMonitor {
    private var status: SharedLogStatus
    private var hub: SharedLogHub?
    private let logger: Logger

    init(hostID: String, cursor: UInt64, logger: Logger) {
        status = SharedLogStatus(hostID: hostID, reachable: true, cursor: cursor)
        self.logger = logger
    }

    var isReachable: Bool { status.reachable }

    func attach(_ hub: SharedLogHub) async {
        self.hub = hub
        await push()
    }

    func succeeded(cursor: UInt64? = nil) async {
        if let cursor { status.cursor = cursor }
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
            logger.error(
                "event log unreachable: publishes are refused (503) until it is back; streams stay up",
                metadata: ["error": "\(text)", "event": "log-unreachable"])
        }
        await push()
    }

    func heartbeat(hosts: [SharedLogStatus.Host]) async {
        status.hosts = hosts
        _ = becameReachable()
        await push()
    }

    private func push() async {
        try? await hub?.statusChanged(status)
    }
}
