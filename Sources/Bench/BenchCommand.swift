import ArgumentParser
import Foundation
import Histogram
import NIOCore
import NIOPosix
import Shared
import Synchronization

@main
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sse-bench",
        abstract: "A load tool for SSE servers: holds many streams, publishes numbered events, measures delivery.",
        subcommands: [RunBench.self, LoadSlice.self],
        defaultSubcommand: RunBench.self
    )
}

/// One process's share of the subscribers (started by `sse-bench run`, not by hand).
struct LoadSlice: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "load", abstract: "Internal: one load process.", shouldDisplay: false)

    @Option var plan: String

    func run() async throws {
        let plan = try JSONDecoder().decode(LoadPlan.self, from: Data(plan.utf8))
        try await LoadProcess.run(plan: plan)
    }
}

struct RunBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", abstract: "Run a benchmark (the default).")

    @Option(help: "sse-hub, nchan, pushpin or node (URL templates and ports preset).")
    var target: BenchTarget.Kind = .sseHub

    @Option(help: "Server host.")
    var host = "127.0.0.1"

    @Option(help: "Server port (default: the target's).")
    var port: Int?

    @Option(help: "Subscribe path template, overriding the preset's ({channel} and {token} are filled in).")
    var streamTemplate: String?

    @Option(help: "Publish path template, overriding the preset's ({channel} is filled in).")
    var publishTemplate: String?

    @Option(help: "Concurrent streams to open.")
    var streams = 1000

    @Option(help: "New connections per second, over all load processes.")
    var ramp = 2000.0

    @Option(help: "At most this many connections being set up at once, over all load processes (default: no limit).")
    var maxConnecting: Int?

    @Option(help: "Load processes (default: enough to keep each under 18000 sockets).")
    var processes: Int?

    @Option(help: "broadcast (every stream gets every event), topics (streams spread over --channels topics), or users (each event to one user, round-robin).")
    var mode: PublishMode = .broadcast

    @Option(help: "Topics/channels the streams are spread over (topics mode; implies it when given).")
    var channels = 0

    enum PublishMode: String, ExpressibleByArgument, Sendable {
        case broadcast, topics, users
    }

    /// The channels events are spread over: none for broadcast, one per user in users mode.
    var effectiveChannels: Int {
        switch mode {
        case .broadcast: channels
        case .topics: max(channels, 1)
        case .users: streams
        }
    }

    @Option(help: "new (one connection per publish) or kept (connections kept between publishes, as a backend's HTTP client keeps them).")
    var publishConnections: PublishConnections = .new

    enum PublishConnections: String, ExpressibleByArgument, Sendable {
        case new, kept
    }

    @Option(help: "Events to publish.")
    var events = 20

    @Option(help: "Publishes per second.")
    var rate = 10.0

    @Option(help: "Root PID of the server (its descendants are included) for memory and CPU figures.")
    var serverPid: Int32?

    @Option(help: "Further server roots counted in memory and CPU (the other hosts of a cluster, its database; repeatable).")
    var alsoServerPid: [Int32] = []

    @Option(
        parsing: .upToNextOption,
        help: "Several hosts of one hub (a cluster): load process i connects to the i-th port (round-robin), and publishes go to each in turn.")
    var ports: [Int] = []

    @Option(help: "Seconds to let connections settle before measuring idle memory.")
    var settle = 2.0

    @Option(help: "Seconds to hold the streams idle after they settled (heartbeats running), measuring the server's CPU, before publishing.")
    var idleSeconds = 0.0

    @Option(help: "Broadcast only: once the --events arrived, publish this many more at once and report the time until all of them reached every stream (ten in a row: 10).")
    var burst = 0

    @Option(help: "Seconds to wait for deliveries after the last publish.")
    var drain = 15.0

    @Option(help: "File with the HS256 secret for minting tokens (else $SSE_JWT_SECRET).")
    var jwtSecretFile: String?

    @Option(help: "ALG:PATH: sign the streams' tokens with this private key (RS256 or ES256, PEM) instead of the secret, which still signs the publisher's.")
    var tokenKey: String?

    @Option(help: "Send SIGHUP (sse-hub: reload, an in-place upgrade of the supervisor then every worker replaced) to --server-pid before every Nth event.")
    var reloadEvery: Int?

    @Option(help: "With --reload-every: reload through this operator socket with `ctl reload --workers-only` instead (the supervisor kept).")
    var reloadWorkersOnly: String?

    @Option(help: "A reconnect storm: after this many events are published, every stream drops its connection at once and reconnects with its Last-Event-ID while the publishing goes on.")
    var stormAfter: Int?

    @Option(help: "With --storm-after: reconnections offered per second, over all load processes (default: --ramp); --max-connecting applies too.")
    var stormRate: Double?

    @Option(help: "Stop opening streams while the machine's available memory is under this many MiB (0: no guard).")
    var memoryFloorMib = 2048

    @Flag(help: "Print the report as JSON.")
    var json = false

    @Flag(help: "Exit non-zero unless every stream connected and every event arrived exactly once, in order.")
    var strict = false

    func validate() throws {
        guard streams > 0, events > 0, rate > 0, ramp > 0 else { throw ValidationError("--streams, --events, --rate and --ramp must be positive") }
        if let maxConnecting, maxConnecting < (processes ?? 1) {
            throw ValidationError("--max-connecting must allow at least one connection per load process")
        }
        if let stormAfter, !(1..<events).contains(stormAfter) {
            throw ValidationError("--storm-after must leave events to publish before and after the storm (1 to --events - 1)")
        }
        guard burst >= 0, burst == 0 || effectiveChannels == 0 else { throw ValidationError("--burst is for broadcast runs") }
        guard memoryFloorMib >= 0 else { throw ValidationError("--memory-floor-mib must not be negative") }
        guard channels >= 0, effectiveChannels == 0 || events % effectiveChannels == 0 else {
            throw ValidationError(
                "--events must be a multiple of the channels (--channels, or --streams in users mode), so every channel gets as many")
        }
    }

    func run() async throws {
        var target = BenchTarget.preset(self.target, host: host, port: port)
        if let streamTemplate { target.streamTemplate = streamTemplate }
        if let publishTemplate { target.publishTemplate = publishTemplate }
        let secret: String? = target.usesTokens ? try JWTSecret.load(file: jwtSecretFile) : nil
        let hostPorts = ports.isEmpty ? [target.port] : ports
        // At least one load process per host, and as many for each.
        let processCount = Self.roundedUp(processes ?? max(1, (streams + 17_999) / 18_000), toMultipleOf: hostPorts.count)
        let server = serverPid.map { ServerProcesses(roots: [$0] + alsoServerPid) }
        let baselineKilobytes = server?.residentKilobytes()
        let kernelBefore = KernelMemory.read()
        let rootCPUBeforeConnect = serverPid.map { ProcessCPU.seconds(pid: String($0)) }
        let serverCPUBeforeConnect = server?.cpuSeconds()
        progress(
            "sse-bench: \(streams) streams to \(target.kind.rawValue) at \(host):\(hostPorts.map(String.init).joined(separator: ",")) from \(processCount) process(es)")

        let fleet = try LoadFleet.start(
            plans: (0..<processCount).map { index in
                let share = streams / processCount + (index < streams % processCount ? 1 : 0)
                let first = (0..<index).reduce(0) { $0 + streams / processCount + ($1 < streams % processCount ? 1 : 0) }
                var hostTarget = target
                hostTarget.port = hostPorts[index % hostPorts.count]
                return LoadPlan(
                    target: hostTarget, firstIndex: first, count: share, rampRate: ramp / Double(processCount), channels: effectiveChannels,
                    subscribesToTopics: mode != .users && effectiveChannels > 0, secret: secret, tokenKey: tokenKey,
                    maximumConnecting: maxConnecting.map { $0 / processCount }, stormRate: stormRate.map { $0 / Double(processCount) },
                    memoryFloorBytes: memoryFloorMib > 0 ? UInt64(memoryFloorMib) << 20 : nil, burstFrom: burst > 0 ? events : nil)
            })
        defer { fleet.stop() }

        let connectStart = ContinuousClock.now
        // A busy machine sets up fewer than offered (a million streams on two cores slow to a third of the offer) and
        // fails nothing: the wait ends when nothing moves for a minute, not at a time fixed by the offer.
        try await fleet.waitUntil(
            timeout: .seconds(10 * Double(streams) / ramp + 300), stalled: .seconds(60),
            advance: { $0.reduce(0) { $0 + $1.established + $1.failed } }
        ) { all in
            all.allSatisfy(\.settled)
        } progress: { all in
            "connecting: \(all.reduce(0) { $0 + $1.established }) established, \(all.reduce(0) { $0 + $1.failed }) failed"
        }
        let rootCPUForConnects = zip(rootCPUBeforeConnect, serverPid.map { ProcessCPU.seconds(pid: String($0)) }).map { $1 - $0 }
        let serverCPUForConnects = zip(serverCPUBeforeConnect, server?.cpuSeconds()).map { $1 - $0 }
        let connectPhase = Self.connectPhase(fleet.latest, fallback: connectStart.duration(to: .now).seconds)
        try await Task.sleep(for: .seconds(settle))
        let idleKilobytes = server?.residentKilobytes()
        let kernelIdle = KernelMemory.read()
        let connected = fleet.latest.reduce(0) { $0 + $1.established }
        var idleCPU: (seconds: Double, cpuSeconds: Double)?
        if idleSeconds > 0, let server {
            progress("holding \(connected) streams idle for \(idleSeconds) s")
            let before = server.cpuSeconds()
            try await Task.sleep(for: .seconds(idleSeconds))
            idleCPU = (idleSeconds, server.cpuSeconds() - before)
        }
        progress("connected \(connected) in \(String(format: "%.1f", connectPhase.seconds)) s; publishing \(events) events at \(rate)/s")

        var publisherToken: String?
        if let secret {
            publisherToken = try await TokenSigner(secret: secret).sign(userID: "sse-bench", publisher: true, lifetime: 86_400)
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let publisher = Publisher(
            target: target, publishPorts: ports.isEmpty ? [target.publishPort] : ports, group: group, publisherToken: publisherToken,
            keptConnections: publishConnections == .kept)
        let cpuBefore = server?.cpuSeconds()
        let publishStart = MonotonicClock.nanoseconds()
        let (reloadEvery, serverPid, workersOnlySocket) = (self.reloadEvery, self.serverPid, self.reloadWorkersOnly)
        var reloads = 0
        let stormAfter = self.stormAfter
        var storm: StormWatch?
        try await publisher.run(count: events, rate: rate, channels: effectiveChannels, toUsers: mode == .users) { index in
            if index == stormAfter {
                storm = StormWatch.start(fleet: fleet, server: server, root: serverPid)
            }
            guard let reloadEvery, index > 0, index % reloadEvery == 0 else { return }
            if let workersOnlySocket {
                Self.reloadWorkersOnly(through: workersOnlySocket)
            } else if let serverPid {
                kill(serverPid, SIGHUP)
            }
            reloads += 1
        }
        var expected = Self.expectedDeliveries(events: events, channels: effectiveChannels, streams: fleet.latest.map(\.established))
        try? await fleet.waitUntil(timeout: .seconds(drain)) { all in
            all.reduce(0) { $0 + $1.received } >= expected
        } progress: { all in
            "delivering: \(all.reduce(0) { $0 + $1.received }) of \(expected)"
        }
        var burstStart: UInt64?
        if burst > 0 {
            progress("publishing \(burst) more events at once")
            burstStart = MonotonicClock.nanoseconds()
            try await publisher.run(count: burst, first: events, rate: 1_000_000, channels: 0)
            let all = Self.expectedDeliveries(events: events + burst, channels: 0, streams: fleet.latest.map(\.established))
            expected = all
            try? await fleet.waitUntil(timeout: .seconds(drain)) { $0.reduce(0) { $0 + $1.received } >= all } progress: { all in
                "delivering the burst: \(all.reduce(0) { $0 + $1.received }) received"
            }
        }
        let cpuAfter = server?.cpuSeconds()
        let stormOutcome = await storm?.outcome()
        let results = try await fleet.collectResults()
        try await group.shutdownGracefully()

        var report = BenchReport(
            target: target.kind.rawValue, streams: streams, processes: processCount, channels: effectiveChannels, events: events, rate: rate,
            results: results, connectSeconds: connectPhase.seconds, loadToolConnectCPUSeconds: connectPhase.toolCPUSeconds,
            loadToolSettledCPUSeconds: connectPhase.toolSettledCPUSeconds,
            publishStartNanoseconds: publishStart,
            publishesSucceeded: publisher.succeeded, publishesFailed: publisher.failed, expectedDeliveries: expected,
            serverBaselineKilobytes: baselineKilobytes, serverIdleKilobytes: idleKilobytes,
            serverCPUSeconds: zip(cpuBefore, cpuAfter).map { $1 - $0 }, rootCPUSecondsForConnects: rootCPUForConnects,
            serverCPUSecondsForConnects: serverCPUForConnects,
            reloads: reloads, storm: stormOutcome)
        if let burstStart {
            let last = results.map(\.lastReceivedAt).max() ?? burstStart
            report.burst = BenchReport.Burst(
                events: burst, milliseconds: Double(last > burstStart ? last - burstStart : 0) / 1e6,
                latencyMilliseconds: BenchReport.Latency(.merging(results.compactMap(\.burstLatency)), scale: 1000))
        }
        report.kernel = BenchReport.Kernel(before: kernelBefore, idle: kernelIdle, connections: report.established)
        report.publishConnections = publishConnections.rawValue
        if let idleCPU { report.serverIdleCPUPercent = idleCPU.cpuSeconds / idleCPU.seconds * 100 }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(report.text)
        }
        if strict, !report.isClean { throw ExitCode(1) }
    }

    static func roundedUp(_ value: Int, toMultipleOf step: Int) -> Int { (value + step - 1) / step * step }

    /// From the first connection attempted to the last one established, over every load process (they share
    /// one monotonic clock), and the load processes' CPU over that phase.
    static func connectPhase(
        _ progress: [LoadProgress], fallback: Double
    ) -> (seconds: Double, toolCPUSeconds: Double?, toolSettledCPUSeconds: Double?) {
        func sum(_ field: KeyPath<LoadProgress, Double?>) -> Double? {
            progress.allSatisfy { $0[keyPath: field] != nil } ? progress.reduce(0) { $0 + ($1[keyPath: field] ?? 0) } : nil
        }
        let firsts = progress.map(\.firstAttemptAt).filter { $0 > 0 }
        let lasts = progress.map(\.lastEstablishedAt).filter { $0 > 0 }
        let seconds = if let first = firsts.min(), let last = lasts.max(), last > first { Double(last - first) / 1e9 } else { fallback }
        return (seconds, sum(\.connectCPUSeconds), sum(\.settledCPUSeconds))
    }

    /// `sse-supervisor ctl reload --workers-only`, not waited for (the publishing goes on meanwhile, as with SIGHUP).
    static func reloadWorkersOnly(through socket: String) {
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("sse-supervisor")
        let process = Process()
        process.executableURL = executable
        process.arguments = ["ctl", "reload", "--workers-only", "--socket", socket]
        process.standardOutput = FileHandle.nullDevice
        try? process.run()
    }

    /// Broadcast: every stream gets every event. Channels: event `i` goes to channel `i % channels`.
    static func expectedDeliveries(events: Int, channels: Int, streams: [Int]) -> Int {
        let total = streams.reduce(0, +)
        return channels > 0 ? total * events / channels : total * events
    }

    func progress(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}

func zip(_ a: Double?, _ b: Double?) -> (Double, Double)? {
    guard let a, let b else { return nil }
    return (a, b)
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

extension BenchTarget.Kind: ExpressibleByArgument {}
