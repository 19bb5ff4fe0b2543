import Foundation
import Histogram

/// The figures of one run.
struct BenchReport: Codable {
    struct Latency: Codable {
        var p50: Double
        var p99: Double
        var p999: Double
        var max: Double
        var count: UInt64

        init(_ histogram: Histogram<UInt64>, scale: Double) {
            p50 = Double(histogram.valueAtPercentile(50)) / scale
            p99 = Double(histogram.valueAtPercentile(99)) / scale
            p999 = Double(histogram.valueAtPercentile(99.9)) / scale
            max = Double(histogram.max) / scale
            count = histogram.totalCount
        }
    }

    var target: String
    var streams: Int
    var processes: Int
    var channels: Int
    var events: Int
    var publishRate: Double
    /// `--publish-connections`: new (one per publish) or kept.
    var publishConnections = "new"
    var established: Int
    var failed: Int
    var closedEarly: Int
    var connectSeconds: Double
    var connectsPerSecond: Double
    /// Milliseconds from starting the connect to the stream's first bytes.
    var timeToOpenMilliseconds: Latency
    var publishesSucceeded: Int
    var publishesFailed: Int
    var expectedDeliveries: Int
    var delivered: Int
    var lost: Int
    var duplicated: Int
    var reordered: Int
    /// The most distinct orders the complete streams of one channel saw events in (1: every stream saw the same
    /// order; the figure that matters when several hosts publish at once, where `reordered` has no reference).
    var deliveryOrders: Int
    /// Milliseconds from publish to receipt.
    var latencyMilliseconds: Latency
    var deliveredPerSecond: Double
    var serverIdleKilobytesPerStream: Double?
    var serverIdleKilobytes: Int?
    var serverCPUSeconds: Double?
    var serverCPUMicrosecondsPerEvent: Double?
    var loadToolCPUSeconds: Double
    /// The load tool's CPU after the connect phase, per delivered event.
    var loadToolCPUMicrosecondsPerEvent: Double
    /// The load tool's CPU over the connect phase, per connection established.
    var loadToolCPUMicrosecondsPerConnection: Double?
    /// SIGHUPs sent while publishing (`--reload-every`).
    var reloads: Int
    /// CPU of the server's root process (sse-hub: the supervisor) per connection established, over the connect phase.
    var rootCPUMicrosecondsPerConnection: Double?
    /// CPU of all the server's processes per connection established, over the connect phase.
    var serverCPUMicrosecondsPerConnection: Double?
    /// Milliseconds from the first publish to the last delivery: with several events published at once, the time
    /// for all of them to reach every stream.
    var publishToLastDeliveryMilliseconds: Double
    /// The server's CPU while the streams were idle (`--idle-seconds`), heartbeats running, in percent of one core.
    var serverIdleCPUPercent: Double?
    /// `--burst`: events published at once after the others arrived, and the time until every stream had them all.
    var burst: Burst?

    struct Burst: Codable {
        var events: Int
        /// From the burst's first publish to the last delivery.
        var milliseconds: Double
        var latencyMilliseconds: Latency
    }

    /// The kernel's memory for the connections, both ends of each (the load tool's and the server's sockets).
    var kernel: Kernel?

    struct Kernel: Codable {
        var before: KernelMemory
        var idle: KernelMemory
        var slabKilobytesPerConnection: Double
        var tcpBufferKilobytesPerConnection: Double

        init?(before: KernelMemory?, idle: KernelMemory?, connections: Int) {
            guard let before, let idle, connections > 0 else { return nil }
            self.before = before
            self.idle = idle
            slabKilobytesPerConnection = Double(idle.slabKilobytes - before.slabKilobytes) / Double(connections)
            tcpBufferKilobytesPerConnection = Double(idle.tcpBufferKilobytes - before.tcpBufferKilobytes) / Double(connections)
        }
    }

    /// The reconnect storm (`--storm-after`).
    var storm: Storm?
    /// The memory guard stopped the opening of streams (the machine's available memory fell under its floor).
    var stoppedByMemoryGuard: Bool

    /// Every stream dropped at once and reconnected with its `Last-Event-ID` while the publishing went on.
    struct Storm: Codable {
        var dropped: Int
        var resumed: Int
        var failed: Int
        /// From the drop to the last stream resumed (its response head received), over every load process.
        var seconds: Double
        var resumedPerSecond: Double
        /// All the server's CPU from the order to the last resume, per resumed stream: the connection, the replay of
        /// what it missed, and the publishing that goes on meanwhile (a small share at the scenarios' low rates).
        var serverCPUMicrosecondsPerResume: Double?
        /// The root process's share of it (sse-hub: the supervisor's accept, verification and hand-off).
        var rootCPUMicrosecondsPerResume: Double?
        var loadToolCPUMicrosecondsPerResume: Double?
        /// Per resumed stream, milliseconds from publish to receipt of the first event published after it reconnected.
        var firstLiveLatencyMilliseconds: Latency?

        init(_ progress: [StormProgress], firstLive: [Histogram<UInt64>], watch: StormWatch.Outcome) {
            dropped = progress.reduce(0) { $0 + $1.dropped }
            resumed = progress.reduce(0) { $0 + $1.resumed }
            failed = progress.reduce(0) { $0 + $1.failed } + (dropped - progress.reduce(0) { $0 + $1.attempted })
            let first = progress.map(\.droppedAt).filter { $0 > 0 }.min() ?? 0
            let last = progress.map(\.lastResumedAt).max() ?? 0
            seconds = last > first ? Double(last - first) / 1e9 : 0
            resumedPerSecond = seconds > 0 ? Double(resumed) / seconds : 0
            let resumed = Double(max(self.resumed, 1))
            serverCPUMicrosecondsPerResume = watch.serverCPUSeconds.map { $0 * 1e6 / resumed }
            rootCPUMicrosecondsPerResume = watch.rootCPUSeconds.map { $0 * 1e6 / resumed }
            if progress.allSatisfy({ $0.cpuSeconds != nil }) {
                loadToolCPUMicrosecondsPerResume = progress.reduce(0) { $0 + ($1.cpuSeconds ?? 0) } * 1e6 / resumed
            }
            let merged = Histogram.merging(firstLive)
            firstLiveLatencyMilliseconds = merged.totalCount > 0 ? Latency(merged, scale: 1000) : nil
        }

        var isClean: Bool { failed == 0 && resumed == dropped }
    }

    init(
        target: String, streams: Int, processes: Int, channels: Int, events: Int, rate: Double, results: [LoadResult],
        connectSeconds: Double, loadToolConnectCPUSeconds: Double?, loadToolSettledCPUSeconds: Double?, publishStartNanoseconds: UInt64, publishesSucceeded: Int,
        publishesFailed: Int, expectedDeliveries: Int, serverBaselineKilobytes: Int?, serverIdleKilobytes: Int?,
        serverCPUSeconds: Double?, rootCPUSecondsForConnects: Double?, serverCPUSecondsForConnects: Double?, reloads: Int,
        storm: StormWatch.Outcome?
    ) {
        self.reloads = reloads
        self.storm = storm.map { Storm(results.compactMap(\.progress.storm), firstLive: results.compactMap(\.firstLiveLatency), watch: $0) }
        stoppedByMemoryGuard = results.contains { $0.progress.stoppedByMemoryGuard }
        self.target = target
        self.streams = streams
        self.processes = processes
        self.channels = channels
        self.events = events
        publishRate = rate
        established = results.reduce(0) { $0 + $1.progress.established }
        failed = results.reduce(0) { $0 + $1.progress.failed } + (streams - results.reduce(0) { $0 + $1.progress.attempted })
        closedEarly = results.reduce(0) { $0 + $1.progress.closed }
        self.connectSeconds = connectSeconds
        connectsPerSecond = connectSeconds > 0 ? Double(established) / connectSeconds : 0
        timeToOpenMilliseconds = Latency(.merging(results.map(\.timeToOpen)), scale: 1000)
        latencyMilliseconds = Latency(.merging(results.map(\.latency)), scale: 1000)
        self.publishesSucceeded = publishesSucceeded
        self.publishesFailed = publishesFailed
        self.expectedDeliveries = expectedDeliveries
        delivered = results.reduce(0) { $0 + $1.progress.received }
        let unique = results.reduce(0) { $0 + $1.unique }
        lost = max(0, expectedDeliveries - unique)
        duplicated = results.reduce(0) { $0 + $1.duplicates }
        reordered = results.reduce(0) { $0 + $1.reordered }
        var orders: [String: Set<UInt64>] = [:]
        for result in results {
            for (channel, fingerprints) in result.ordersByChannel { orders[channel, default: []].formUnion(fingerprints.keys) }
        }
        deliveryOrders = orders.values.map(\.count).max() ?? 0
        let lastDelivery = results.map(\.lastReceivedAt).max() ?? publishStartNanoseconds
        let window = Double(lastDelivery > publishStartNanoseconds ? lastDelivery - publishStartNanoseconds : 1) / 1e9
        deliveredPerSecond = Double(delivered) / window
        publishToLastDeliveryMilliseconds = window * 1000
        self.serverIdleKilobytes = serverIdleKilobytes
        if let serverIdleKilobytes, let serverBaselineKilobytes, established > 0 {
            serverIdleKilobytesPerStream = Double(serverIdleKilobytes - serverBaselineKilobytes) / Double(established)
        }
        self.serverCPUSeconds = serverCPUSeconds
        let deliveredCount = delivered
        serverCPUMicrosecondsPerEvent = serverCPUSeconds.map { deliveredCount > 0 ? $0 * 1e6 / Double(deliveredCount) : 0 }
        let toolCPU = results.reduce(0) { $0 + $1.cpuSeconds }
        loadToolCPUSeconds = toolCPU
        let toolCPUPublishing = toolCPU - (loadToolSettledCPUSeconds ?? 0)
        loadToolCPUMicrosecondsPerEvent = deliveredCount > 0 ? toolCPUPublishing * 1e6 / Double(deliveredCount) : 0
        let connections = established
        func perConnection(_ seconds: Double?) -> Double? { seconds.map { connections > 0 ? $0 * 1e6 / Double(connections) : 0 } }
        rootCPUMicrosecondsPerConnection = perConnection(rootCPUSecondsForConnects)
        serverCPUMicrosecondsPerConnection = perConnection(serverCPUSecondsForConnects)
        loadToolCPUMicrosecondsPerConnection = perConnection(loadToolConnectCPUSeconds)
    }

    /// Everything connected, every event arrived exactly once and in order, every publish was accepted.
    var isClean: Bool {
        failed == 0 && established == streams && lost == 0 && duplicated == 0 && reordered == 0 && publishesFailed == 0
            && closedEarly == 0 && storm?.isClean != false && !stoppedByMemoryGuard
    }

    var text: String {
        func f(_ value: Double, _ digits: Int = 1) -> String { String(format: "%.\(digits)f", value) }
        var lines = [
            "target            \(target), \(streams) streams, \(processes) load process(es), \(channels == 0 ? "broadcast" : "\(channels) channels")",
            "connections       \(established) established, \(failed) failed, \(closedEarly) closed early; \(f(connectsPerSecond, 0))/s",
            "time to open      p50 \(f(timeToOpenMilliseconds.p50, 2)) ms, p99 \(f(timeToOpenMilliseconds.p99, 2)) ms, max \(f(timeToOpenMilliseconds.max, 2)) ms",
            "publishes         \(publishesSucceeded) accepted, \(publishesFailed) failed, \(f(publishRate))/s, \(publishConnections) connections"
                + (reloads > 0 ? "; \(reloads) reloads (SIGHUP) meanwhile" : ""),
            "deliveries        \(delivered) of \(expectedDeliveries); lost \(lost), duplicated \(duplicated), reordered \(reordered) (against the publisher's numbering), delivery orders \(deliveryOrders) (distinct orders the complete streams of a channel saw)",
            "latency           p50 \(f(latencyMilliseconds.p50, 2)) ms, p99 \(f(latencyMilliseconds.p99, 2)) ms, p99.9 \(f(latencyMilliseconds.p999, 2)) ms, max \(f(latencyMilliseconds.max, 2)) ms",
            "throughput        \(f(deliveredPerSecond, 0)) events/s delivered",
        ]
        if let perStream = serverIdleKilobytesPerStream, let idle = serverIdleKilobytes {
            lines.append("server memory     \(idle) KiB resident with streams idle: \(f(perStream, 2)) KiB per stream")
        }
        if let kernel {
            lines.append(
                "kernel memory     slab \(f(kernel.slabKilobytesPerConnection, 2)) KiB, TCP buffers \(f(kernel.tcpBufferKilobytesPerConnection, 2)) KiB per connection (both ends)")
        }
        if let serverIdleCPUPercent {
            lines.append("server idle CPU   \(f(serverIdleCPUPercent, 2)) % of a core with the streams idle (heartbeats running)")
        }
        if let burst {
            lines.append(
                "burst             \(burst.events) events published at once reached every stream in \(f(burst.milliseconds, 1)) ms "
                    + "(latency p50 \(f(burst.latencyMilliseconds.p50, 2)) ms, p99 \(f(burst.latencyMilliseconds.p99, 2)) ms)")
        }
        lines.append("delivery span     \(f(publishToLastDeliveryMilliseconds, 1)) ms from the first publish to the last delivery")
        if let cpu = serverCPUSeconds, let perEvent = serverCPUMicrosecondsPerEvent {
            lines.append("server CPU        \(f(cpu, 2)) s while publishing: \(f(perEvent, 2)) µs per delivered event")
        }
        if let server = serverCPUMicrosecondsPerConnection, let root = rootCPUMicrosecondsPerConnection {
            lines.append(
                "set-up CPU        server \(f(server, 1)) µs per connection established, of which its root process \(f(root, 1)) µs"
                    + " (sse-hub: the supervisor's hand-off)")
        }
        if let storm {
            func us(_ value: Double?) -> String { value.map { f($0, 1) + " µs" } ?? "?" }
            lines.append(
                "reconnect storm   \(storm.dropped) dropped, \(storm.resumed) resumed, \(storm.failed) failed in \(f(storm.seconds, 2)) s: "
                    + "\(f(storm.resumedPerSecond, 0)) resumed/s; server CPU \(us(storm.serverCPUMicrosecondsPerResume)) per resume "
                    + "(replay and the publishing meanwhile included; its root process \(us(storm.rootCPUMicrosecondsPerResume))), load tool \(us(storm.loadToolCPUMicrosecondsPerResume))")
            if let live = storm.firstLiveLatencyMilliseconds {
                lines.append("first live event  p50 \(f(live.p50, 2)) ms, p99 \(f(live.p99, 2)) ms, max \(f(live.max, 2)) ms after the resume")
            }
        }
        if stoppedByMemoryGuard {
            lines.append("memory guard      stopped opening streams: the machine's available memory fell under --memory-floor-mib")
        }
        lines.append(
            "load tool CPU     \(f(loadToolCPUSeconds, 2)) s: \(f(loadToolCPUMicrosecondsPerEvent, 2)) µs per delivered event"
                + (loadToolCPUMicrosecondsPerConnection.map { ", \(f($0, 1)) µs per connection" } ?? ""))
        return lines.joined(separator: "\n")
    }
}

extension Histogram<UInt64> {
    /// Microseconds up to two minutes, to three significant digits: what every latency of the tool is kept in.
    static func microseconds() -> Self { Histogram(highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: .three) }

    /// The load processes' histograms of one figure, as one.
    static func merging(_ parts: [Self]) -> Self {
        var merged = microseconds()
        for part in parts { merged.add(part) }
        return merged
    }
}
