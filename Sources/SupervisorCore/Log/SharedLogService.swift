import ServiceLifecycle

/// The shared log's follower, heartbeat and retention, run as one of the supervisor's services.
struct SharedLogService: Service {
    let log: any SharedEventLog
    let hub: SharedLogHub

    func run() async throws {
        // From where the plane stands: where the host joined, or where its previous program stopped (an upgrade).
        let cursor = try await hub.plane.eventLoop.submit { [plane = hub.plane] in plane.value.logCursor }.get()
        try await log.run(hub: hub, from: cursor)
    }
}
