import Shared

/// A reload refused before any worker was touched; the running workers stay.
enum ReloadRefused: Error, CustomStringConvertible {
    /// The installed worker would not understand this supervisor.
    case incompatible(installed: String?, path: String)
    /// The supervisor is shutting down.
    case shuttingDown

    var description: String {
        switch self {
        case .incompatible(let installed, let path):
            "reload refused: the installed sse-worker (\(path)) speaks \(installed ?? "nothing this supervisor understands"), this "
                + "supervisor \(WireProtocol.versions); the running workers stay. Restart the service to upgrade (the socket "
                + "keeps waiting clients; streams reconnect and resume)"
        case .shuttingDown:
            "reload refused: the server is shutting down"
        }
    }
}
