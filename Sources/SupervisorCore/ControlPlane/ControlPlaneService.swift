import NIOCore
import ServiceLifecycle

/// Runs the control plane as a service: starts its shards, and on graceful shutdown stops every worker (each is
/// asked to end its streams, and killed if it has not within the grace period).
struct ControlPlaneService: Service {
    let plane: NIOLoopBound<ControlPlane>

    func run() async throws {
        try await plane.eventLoop.flatSubmit { plane.value.start() }.get()
        try? await gracefulShutdown()
        try await plane.eventLoop.flatSubmit { plane.value.shutdown() }.get()
    }
}
