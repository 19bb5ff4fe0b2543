import Foundation
import Histogram
import NIOCore
import NIOHTTP1
import NIOPosix
import Shared

/// What a load process is asked to do: its slice of the subscribers.
struct LoadPlan: Codable, Sendable {
    var target: BenchTarget
    var firstIndex: Int
    var count: Int
    /// Connections per second for this process.
    var rampRate: Double
    /// Channels (topics) the subscribers are spread over; 0 means one broadcast channel.
    var channels: Int
    /// Topic mode: each user subscribes to its channel before streaming (sse-hub, Node). Not in user mode.
    var subscribesToTopics: Bool
    var secret: String?
    /// At most this many of this process's connections may be set up at once (connecting, or waiting for the
    /// response head); nil: no limit. Some servers ask for it (Pushpin's README: at most 50 connects in flight).
    var maximumConnecting: Int?
}

/// Messages a load process writes to stdout, one JSON object a line.
enum LoadMessage: Codable, Sendable {
    case progress(LoadProgress)
    case result(LoadResult)
}

struct LoadProgress: Codable, Sendable {
    var attempted: Int
    var established: Int
    var failed: Int
    var closed: Int
    var received: Int
    var done: Bool
    /// `MonotonicClock` times (one clock for every process) of the first attempt and the latest established
    /// connection: the connect rate is measured between them, not between progress reports a second apart.
    var firstAttemptAt: UInt64 = 0
    var lastEstablishedAt: UInt64 = 0
    /// This process's CPU seconds (since it started, tokens minted included) when its last connection was set
    /// up or failed: what the publishing phase's CPU is measured from.
    var settledCPUSeconds: Double?
    /// Its CPU from the first connection attempted to then: its cost of connecting.
    var connectCPUSeconds: Double?
}

struct LoadResult: Codable, Sendable {
    var progress: LoadProgress
    var unique: Int
    var duplicates: Int
    var reordered: Int
    /// Per subscriber: the unique events it received (to count losses against what was published to its channel).
    var uniqueByChannel: [String: Int]
    var subscribersByChannel: [String: Int]
    var latency: Histogram<UInt64>
    var timeToOpen: Histogram<UInt64>
    var cpuSeconds: Double
    /// `MonotonicClock` time of the last event received.
    var lastReceivedAt: UInt64
    /// Per channel, the distinct arrival orders (`StreamTally.orderFingerprint`) of its subscribers that received
    /// everything published to it, with how many received them in each.
    var ordersByChannel: [String: [UInt64: Int]] = [:]
}

/// Opens this process's subscribers and tallies what they receive. All state lives on one event loop.
final class LoadGenerator {
    let plan: LoadPlan
    let loop: any EventLoop
    var progress = LoadProgress(attempted: 0, established: 0, failed: 0, closed: 0, received: 0, done: false)
    var latency = Histogram<UInt64>(highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: .three)
    var timeToOpen = Histogram<UInt64>(highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: .three)
    var subscribers: [Subscriber] = []
    var lastReceivedAt: UInt64 = 0
    /// CPU seconds when the first connection was attempted.
    var rampStartCPUSeconds: Double = 0

    final class Subscriber {
        let channel: String
        var tally = StreamTally()
        init(channel: String) { self.channel = channel }
    }

    init(plan: LoadPlan, loop: any EventLoop) {
        self.plan = plan
        self.loop = loop
    }

    func connectionEstablished() {
        progress.established += 1
        progress.lastEstablishedAt = MonotonicClock.nanoseconds()
        reportIfSettled()
    }

    func connectionFailed() {
        progress.failed += 1
        reportIfSettled()
    }

    /// Once every connection is attempted and has an outcome, reports at once (with the CPU spent so far),
    /// rather than at the next once-a-second progress report.
    func reportIfSettled() {
        guard progress.done, progress.settledCPUSeconds == nil, progress.established + progress.failed >= plan.count else { return }
        let cpu = ProcessCPU.seconds()
        progress.settledCPUSeconds = cpu
        progress.connectCPUSeconds = cpu - rampStartCPUSeconds
        LoadProcess.emit(.progress(progress))
    }

    func channelName(forIndex index: Int) -> String {
        plan.channels > 0 ? "bench-\(index % plan.channels)" : "all"
    }

    var result: LoadResult {
        var uniqueByChannel: [String: Int] = [:]
        var subscribersByChannel: [String: Int] = [:]
        var unique = 0, duplicates = 0, reordered = 0
        var ordersByChannel: [String: [UInt64: Int]] = [:]
        let highestUnique = Dictionary(subscribers.map { ($0.channel, $0.tally.unique) }, uniquingKeysWith: max)
        for subscriber in subscribers where subscriber.tally.unique > 0 && subscriber.tally.unique == highestUnique[subscriber.channel] {
            // 53 bits: the result crosses JSON between processes, and larger integers do not survive every decoder.
            let fingerprint = subscriber.tally.orderFingerprint & ((1 << 53) - 1)
            ordersByChannel[subscriber.channel, default: [:]][fingerprint, default: 0] += 1
        }
        for subscriber in subscribers {
            uniqueByChannel[subscriber.channel, default: 0] += subscriber.tally.unique
            subscribersByChannel[subscriber.channel, default: 0] += 1
            unique += subscriber.tally.unique
            duplicates += subscriber.tally.duplicates
            reordered += subscriber.tally.reordered
        }
        return LoadResult(
            progress: progress, unique: unique, duplicates: duplicates, reordered: reordered, uniqueByChannel: uniqueByChannel,
            subscribersByChannel: subscribersByChannel, latency: latency, timeToOpen: timeToOpen, cpuSeconds: ProcessCPU.seconds(),
            lastReceivedAt: lastReceivedAt, ordersByChannel: ordersByChannel)
    }
}

/// The handler of one subscriber's connection.
///
/// It reads the response itself instead of through SwiftNIO's HTTP decoder: the load tool must cost as
/// little per event as it can, or it measures itself rather than the server. It checks the status line,
/// skips the head, and scans the body for `data:` lines; chunk-size lines of a chunked body pass through the
/// scan harmlessly, since both sse-hub and nchan send every SSE frame as one whole chunk.
final class SubscriberHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    let generator: LoadGenerator
    let subscriber: LoadGenerator.Subscriber
    let startedAt: UInt64
    var opened = false
    var head: [UInt8]? = []
    var scanner = DataLineScanner()

    init(generator: LoadGenerator, subscriber: LoadGenerator.Subscriber, startedAt: UInt64) {
        self.generator = generator
        self.subscriber = subscriber
        self.startedAt = startedAt
    }

    private static let headEnd: [UInt8] = Array("\r\n\r\n".utf8)

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = Self.unwrapInboundIn(data)
        if var pending = head {
            pending += buffer.readableBytesView
            guard let end = pending.firstRange(of: Self.headEnd) else {
                if pending.count > 16_384 { fail(context) } else { head = pending }
                return
            }
            head = nil
            let statusLine = pending.prefix(16)
            guard statusLine.starts(with: Array("HTTP/1.1 200".utf8)) || statusLine.starts(with: Array("HTTP/1.0 200".utf8)) else {
                return fail(context)
            }
            generator.connectionEstablished()
            let body = pending[end.upperBound...]
            guard !body.isEmpty else { return }
            buffer = ByteBuffer(bytes: body)
        }
        if !opened {
            opened = true
            _ = generator.timeToOpen.record((MonotonicClock.nanoseconds() - startedAt) / 1000)
        }
        buffer.withUnsafeReadableBytes { bytes in
            scanner.feed(bytes) { sequence, sentAt in
                let now = MonotonicClock.nanoseconds()
                _ = generator.latency.record(now > sentAt ? (now - sentAt) / 1000 : 0)
                generator.progress.received += 1
                generator.lastReceivedAt = now
                subscriber.tally.record(sequence)
            }
        }
    }

    private func fail(_ context: ChannelHandlerContext) {
        head = nil
        generator.connectionFailed()
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if head != nil {
            head = nil
            generator.connectionFailed()  // closed before a response head: it never opened
        } else if opened {
            generator.progress.closed += 1
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// The body of `sse-bench load`: connect at the planned rate, report progress every second, and on
/// "report" (stdin) print the result; stdin's end closes everything.
enum LoadProcess {
    static func run(plan: LoadPlan) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let signer: TokenSigner? = if let secret = plan.secret, plan.target.usesTokens { await TokenSigner(secret: secret) } else { nil }
        var tokens: [String?] = []
        tokens.reserveCapacity(plan.count)
        for index in plan.firstIndex..<(plan.firstIndex + plan.count) {
            tokens.append(try await signer?.sign(userID: "bench-\(index)", lifetime: 86_400))
        }
        let generator = try await loop.submit { NIOLoopBound(LoadGenerator(plan: plan, loop: loop), eventLoop: loop) }.get()
        let server = try SocketAddress.makeAddressResolvingHost(plan.target.host, port: plan.target.port)

        let allTokens = tokens
        try await loop.submit {
            ramp(tokens: allTokens, server: server, generator: generator, group: group)
            loop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
                emit(.progress(generator.value.progress))
            }
        }.get()

        while let line = readLine() {
            if line == "report" {
                let result = try await loop.submit { generator.value.result }.get()
                emit(.result(result))
            }
        }
        try await group.shutdownGracefully()
    }

    /// Opens connections on a fixed timeline, `rampRate` a second from the first, catching up after a late
    /// tick: the rate offered does not sag when the machine is busy (a loop that waits a fixed interval after
    /// each connect slows down with the server, and then measures itself).
    private static func ramp(tokens: [String?], server: SocketAddress, generator: NIOLoopBound<LoadGenerator>, group: any EventLoopGroup) {
        let state = generator.value
        let start = MonotonicClock.nanoseconds()
        state.progress.firstAttemptAt = start
        state.rampStartCPUSeconds = ProcessCPU.seconds()
        state.loop.scheduleRepeatedTask(initialDelay: .zero, delay: .milliseconds(1)) { task in
            let state = generator.value
            let elapsed = Double(MonotonicClock.nanoseconds() - start) / 1e9
            var due = min(state.plan.count, Int(elapsed * state.plan.rampRate) + 1)
            if let limit = state.plan.maximumConnecting {
                due = min(due, state.progress.established + state.progress.failed + limit)
            }
            while state.progress.attempted < due {
                connect(state.progress.attempted, tokens: tokens, server: server, generator: generator, group: group)
            }
            if state.progress.attempted == state.plan.count {
                task.cancel()
                state.progress.done = true
                emit(.progress(state.progress))
                state.reportIfSettled()
            }
        }
    }

    private static func connect(
        _ offset: Int, tokens: [String?], server: SocketAddress, generator: NIOLoopBound<LoadGenerator>, group: any EventLoopGroup
    ) {
        let state = generator.value
        let index = state.plan.firstIndex + offset
        let subscriber = LoadGenerator.Subscriber(channel: state.channelName(forIndex: index))
        state.subscribers.append(subscriber)
        state.progress.attempted += 1
        let request = state.plan.target.streamRequest(channel: subscriber.channel, token: tokens[offset])
        let startedAt = MonotonicClock.nanoseconds()
        // The group has one loop, so the channel is set up on the loop that owns the subscriber.
        let boundSubscriber = NIOLoopBound(subscriber, eventLoop: state.loop)
        // Spread over many loopback source addresses, so ephemeral ports never run out.
        let source = try? SocketAddress(ipAddress: "127.0.\(1 + index / 250 % 250).\(1 + index % 250)", port: 0)
        var bootstrap = ClientBootstrap(group: group)
            // The port is picked at connect(), for the whole 4-tuple: bind()'s own search for a free port
            // was the largest part of the tool's cost per connection.
            .channelOption(ChannelOptions.ipOption(.init(rawValue: IP_BIND_ADDRESS_NO_PORT)), value: 1)
            .channelOption(ChannelOptions.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 256, initial: 1024, maximum: 65536))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        SubscriberHandler(generator: generator.value, subscriber: boundSubscriber.value, startedAt: startedAt))
                }
            }
        if let source { bootstrap = bootstrap.bind(to: source) }
        let target = state.plan.target
        let openStream = { [bootstrap] in
            bootstrap.connect(to: server).whenComplete { result in
                switch result {
                case .success(let channel):
                    channel.writeAndFlush(request, promise: nil)
                case .failure:
                    generator.value.connectionFailed()
                }
            }
        }
        if state.plan.subscribesToTopics, let subscribe = target.subscribeRequest(channel: subscriber.channel, token: tokens[offset]) {
            OneShotRequest.send(subscribe, host: target.host, port: target.port, group: group).hop(to: state.loop)
                .assumeIsolated().whenSuccess { status in
                    if status == 200 { openStream() } else { generator.value.connectionFailed() }
                }
        } else {
            openStream()
        }
    }

    static func emit(_ message: LoadMessage) {
        guard let data = try? JSONEncoder().encode(message) else { return }
        FileHandle.standardOutput.write(data + Data("\n".utf8))
    }
}

/// Writes a prepared request's bytes from the head of the pipeline. The response decoder pairs each response
/// with a request it saw written, so it is shown a request head, which this handler then drops.
final class RequestSink: ChannelOutboundHandler, Sendable {
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = ByteBuffer

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        promise?.succeed()
    }

    /// On `channel`'s event loop.
    static func send(_ request: ByteBuffer, on channel: any Channel) {
        channel.pipeline.syncOperations.write(NIOAny(HTTPClientRequestPart.head(.init(version: .http1_1, method: .GET, uri: "/"))), promise: nil)
        if let context = try? channel.pipeline.syncOperations.context(handlerType: RequestSink.self) {
            context.writeAndFlush(NIOAny(request), promise: nil)
        }
    }
}

/// CPU time (user + system) this process has used, from `/proc/self/stat`.
enum ProcessCPU {
    static func seconds(pid: String = "self") -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // Fields after the command: state is 0, utime is 11, stime is 12.
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}
