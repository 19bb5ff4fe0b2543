import NIOCore
import ServiceLifecycle
import UnixSignals

/// Asks the control plane for a reload for every SIGHUP (`systemctl reload`).
struct ReloadOnHangup: Service {
    let plane: NIOLoopBound<ControlPlane>

    func run() async throws {
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        await cancelWhenGracefulShutdown {
            for await _ in hangups {
                // A refusal is logged where it is decided; the next SIGHUP tries again.
                try? await plane.eventLoop.flatSubmit { plane.value.reload() }.get()
            }
        }
    }
}
