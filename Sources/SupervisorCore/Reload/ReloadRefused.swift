import Shared
import SystemPackage

/// A reload refused before anything changed: the running supervisor and workers stay, and keep serving. Each has a
/// stable code (`ctl reload` prints it, and exits with status 2).
enum ReloadRefused: Error, CustomStringConvertible {
    /// The installed worker would not understand the supervisor that would run it.
    case incompatible(installed: String?, wanted: String, path: String)
    /// The supervisor is shutting down.
    case shuttingDown
    /// The installed supervisor binary is missing, broken, or did not answer the pre-flight in time.
    case binaryUnusable(path: String, reason: String)
    /// The installed supervisor cannot take this one's state over (a format or protocol it does not read).
    case stateRefused(path: String, reason: String)
    /// What the upgrade would hand over is not still: a worker starting or stopping, a worker not draining its
    /// control channel, the shared log's changes not written.
    case notSteady(String)
    /// `execve` failed; this program runs on.
    case executeFailed(path: String, Errno)

    var code: String {
        switch self {
        case .incompatible: "reload.worker-incompatible"
        case .shuttingDown: "reload.shutting-down"
        case .binaryUnusable: "upgrade.binary-unusable"
        case .stateRefused: "upgrade.state-refused"
        case .notSteady: "upgrade.not-steady"
        case .executeFailed: "upgrade.exec-failed"
        }
    }

    var description: String {
        switch self {
        case .incompatible(let installed, let wanted, let path):
            "reload refused: the installed sse-worker (\(path)) speaks \(installed ?? "nothing this supervisor understands"), the "
                + "supervisor \(wanted); the running workers stay. Install matching sse-supervisor and sse-worker binaries"
        case .shuttingDown:
            "reload refused: the server is shutting down"
        case .binaryUnusable(let path, let reason):
            "upgrade refused: the installed sse-supervisor (\(path)) \(reason); nothing changed, this release runs on"
        case .stateRefused(let path, let reason):
            "upgrade refused: the installed sse-supervisor (\(path)) cannot take this one's state over: \(reason); nothing "
                + "changed, this release runs on (restart the service to change to it: streams reconnect and resume)"
        case .notSteady(let reason):
            "upgrade refused: \(reason); nothing changed, try again"
        case .executeFailed(let path, let errno):
            "upgrade failed: execve(\(path)): \(errno); this release runs on, nothing changed"
        }
    }
}
