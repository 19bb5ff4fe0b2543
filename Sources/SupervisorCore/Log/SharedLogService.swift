import ServiceLifecycle

/// The shared log's follower, heartbeat and retention, run as one of the supervisor's services.
struct SharedLogService: Service {
    let log: any SharedEventLog
    let hub: SharedLogHub

    func run() async throws {
        try await log.run(hub: hub)
    }
}
