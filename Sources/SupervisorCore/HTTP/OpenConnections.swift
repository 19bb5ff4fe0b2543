import NIOCore
import Synchronization

/// How many connections the supervisor is serving itself (publishes, health, stats, refusals): an in-place upgrade
/// waits for them to be answered before it replaces the program.
final class OpenConnections: Sendable {
    private let open = Atomic<Int>(0)

    var count: Int { open.load(ordering: .relaxed) }

    /// Counts `channel` until it closes.
    func track(_ channel: any Channel) {
        open.add(1, ordering: .relaxed)
        channel.closeFuture.whenComplete { _ in self.open.subtract(1, ordering: .relaxed) }
    }
}
