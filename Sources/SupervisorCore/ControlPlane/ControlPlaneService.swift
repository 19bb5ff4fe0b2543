import NIOCore
import ServiceLifecycle
import Shared

/// Runs the control plane as a service: starts its shards (or, after an in-place upgrade, takes over the workers and
/// finishes the reload that upgraded it), and on graceful shutdown stops every worker (each is asked to end its
/// streams, and killed if it has not within the grace period).
struct ControlPlaneService: Service {
    let plane: NIOLoopBound<ControlPlane>
    var resuming: UpgradeState?
    var operators: OperatorConnections?

    func run() async throws {
        try await plane.eventLoop.flatSubmit { [resuming, operators] in
            let plane = plane.value
            // On the plane's loop, which `start` completes on: the plane itself is not Sendable.
            return plane.start(resuming: resuming).assumeIsolated().map {
                if let resuming, let operators { plane.finishUpgrade(from: resuming, operators: operators) }
            }.nonisolated()
        }.get()
        try? await gracefulShutdown()
        try await plane.eventLoop.flatSubmit { plane.value.shutdown() }.get()
    }
}
