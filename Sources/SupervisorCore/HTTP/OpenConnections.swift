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

    /// Asks every connection to finish (`Drain`).
    func drain() {
        for channel in open.withLock({ Array($0.values) }) {
            channel.pipeline.fireUserInboundEventTriggered(Drain())
        }
    }

    /// Finish: a kept connection between two requests closes now; any other answers the request it has, or is about to
    /// read, and closes. Not NIO's `ChannelShouldQuiesceEvent`: `HTTPServerPipelineHandler` closes at once a connection
    /// whose first request it has not read yet (adopted a moment ago), which would drop that request unanswered.
    struct Drain: Sendable {}
}
