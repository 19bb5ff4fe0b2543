import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// Publishes numbered events at a fixed rate, one connection per publish (sse-hub closes after each answer).
final class Publisher: Sendable {
    let target: BenchTarget
    let group: any EventLoopGroup
    let publisherToken: String?
    private let outcomes = Mutex((succeeded: 0, failed: 0))

    init(target: BenchTarget, group: any EventLoopGroup, publisherToken: String?) {
        self.target = target
        self.group = group
        self.publisherToken = publisherToken
    }

    var succeeded: Int { outcomes.withLock { $0.succeeded } }
    var failed: Int { outcomes.withLock { $0.failed } }

    /// Publishes `count` events at `rate` per second, spread round-robin over `channels` (0: broadcast);
    /// event `i` carries the sequence number `i / channels` of its channel.
    func run(count: Int, rate: Double, channels: Int) async throws {
        let start = ContinuousClock.now
        for index in 0..<count {
            let due = start + .nanoseconds(Int64(Double(index) * 1_000_000_000 / rate))
            if due > .now { try await Task.sleep(until: due, clock: .continuous) }
            let channel = channels > 0 ? "bench-\(index % channels)" : nil
            let sequence = channels > 0 ? index / channels : index
            publish(target.publishRequest(
                channel: channel, sequence: sequence, sentAt: MonotonicClock.nanoseconds(), publisherToken: publisherToken))
        }
        // Wait for the answers still in flight.
        let deadline = ContinuousClock.now + .seconds(30)
        while succeeded + failed < count, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    private func publish(_ request: ByteBuffer) {
        ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        RequestSink(),
                        ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .dropBytes)),
                        StatusHandler { ok in self.outcomes.withLock { ok ? ($0.succeeded += 1) : ($0.failed += 1) } },
                    ])
                }
            }
            .connect(host: target.host, port: target.publishPort)
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    channel.eventLoop.execute { RequestSink.send(request, on: channel) }
                case .failure:
                    self.outcomes.withLock { $0.failed += 1 }
                }
            }
    }

    /// Reports whether the answer was a 2xx (a connection closed without one is a failure), then closes.
    final class StatusHandler: ChannelInboundHandler {
        typealias InboundIn = HTTPClientResponsePart
        let report: @Sendable (Bool) -> Void
        var reported = false

        init(report: @escaping @Sendable (Bool) -> Void) { self.report = report }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            if case .head(let head) = Self.unwrapInboundIn(data), !reported {
                reported = true
                report((200..<300).contains(head.status.code))
                context.close(promise: nil)
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            if !reported {
                reported = true
                report(false)
            }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }
}
