import NIOCore
import Synchronization

/// The connections the supervisor is serving itself (publishes, health, stats, refusals, and publishers' connections
/// kept between requests): an in-place upgrade drains them and waits for them to close before it replaces the program.
final class OpenConnections: Sendable {
    private let open = Mutex([ObjectIdentifier: any Channel]())

    var count: Int { open.withLock { $0.count } }

    /// Counts `channel` until it closes.
    func track(_ channel: any Channel) {
        let key = ObjectIdentifier(channel)
        open.withLock { $0[key] = channel }
        channel.closeFuture.whenComplete { _ in _ = self.open.withLock { $0.removeValue(forKey: key) } }
    }

    /// Asks every connection to finish: one between requests closes now, one being answered once its answer is
    /// written (`HTTPServerPipelineHandler` quiesces; it also turns that answer's keep-alive into `close`).
    func drain() {
        for channel in open.withLock({ Array($0.values) }) {
            channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        }
    }
}
