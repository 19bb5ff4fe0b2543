import NIOCore
import NIOHTTP1
import NIOPosix
import Shared
import Synchronization

/// Publishes numbered events at a fixed rate to each of `publishPorts` in turn (the hosts of a cluster; one port
/// otherwise): one connection per publish, or, with `keptConnections`, on connections kept between publishes, as a
/// backend's HTTP client does.
final class Publisher: Sendable {
    let target: BenchTarget
    let publishPorts: [Int]
    let group: any EventLoopGroup
    let publisherToken: String?
    private let kept: KeptConnections?
    private let outcomes = Mutex((succeeded: 0, failed: 0))

    init(target: BenchTarget, publishPorts: [Int], group: any EventLoopGroup, publisherToken: String?, keptConnections: Bool = false) {
        self.target = target
        self.publishPorts = publishPorts
        self.group = group
        self.publisherToken = publisherToken
        kept = keptConnections ? KeptConnections(host: target.host, loop: group.next()) : nil
    }

    var succeeded: Int { outcomes.withLock { $0.succeeded } }
    var failed: Int { outcomes.withLock { $0.failed } }

    /// Publishes `count` events at `rate` per second, spread round-robin over `channels` (0: broadcast);
    /// event `i` (numbered from `first`) carries the sequence number `i / channels` of its channel.
    func run(
        count: Int, first: Int = 0, rate: Double, channels: Int, toUsers: Bool = false, before: (Int) -> Void = { _ in }
    ) async throws {
        let start = ContinuousClock.now
        for index in first..<(first + count) {
            before(index)
            let due = start + .nanoseconds(Int64(Double(index - first) * 1_000_000_000 / rate))
            if due > .now { try await Task.sleep(until: due, clock: .continuous) }
            let channel = channels > 0 ? "bench-\(index % channels)" : nil
            let sequence = channels > 0 ? index / channels : index
            publish(
                target.publishRequest(
                    channel: channel, toUser: toUsers, sequence: sequence, sentAt: MonotonicClock.nanoseconds(), publisherToken: publisherToken,
                    keepingConnection: kept != nil),
                port: publishPorts[index % publishPorts.count])
        }
        // Wait for the answers still in flight.
        let deadline = ContinuousClock.now + .seconds(30)
        while succeeded + failed < first + count, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    private func publish(_ request: ByteBuffer, port: Int) {
        let answer = kept?.send(request, port: port) ?? OneShotRequest.send(request, host: target.host, port: port, group: group)
        answer.whenSuccess { status in
            self.outcomes.withLock { (200..<300).contains(status) ? ($0.succeeded += 1) : ($0.failed += 1) }
        }
    }
}
