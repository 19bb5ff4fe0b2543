import Foundation
import Histogram
import Shared
import SystemPackage

/// One load process's streams, on one thread and one `epoll`: raw non-blocking sockets, one shared read buffer, and
/// a few words of state per stream.
///
/// Not SwiftNIO: a channel, its pipeline and its promises cost the load tool more CPU per connection than the
/// servers spend accepting it (110–165 µs against nginx's ~60), so the tool, not the server, set the connect rates
/// on two shared cores. Here a connection costs its system calls (socket, bind, connect, epoll_ctl, send, recv).
final class LoadReactor {
    private let plan: LoadPlan
    private let tokens: [String?]
    private let server: sockaddr_in
    private let epoll: Epoll
    private var streams: [LoadStream]
    private var progress = LoadProgress(attempted: 0, established: 0, failed: 0, closed: 0, received: 0, done: false)
    private var latency = Histogram.microseconds()
    private var timeToOpen = Histogram.microseconds()
    private var firstLiveLatency = Histogram.microseconds()
    private var burstLatency = Histogram.microseconds()
    private var lastReceivedAt: UInt64 = 0
    private var offer: ConnectOffer?
    private var offerStartCPUSeconds: Double = 0
    private var memoryGuard: MemoryGuard?
    private var commands = LineBuffer()
    private var inputOpen = true
    /// Every read lands here first; a stream keeps only what is cut off at the end of a read.
    private let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65_536, alignment: 16)

    private static let inputToken = UInt64.max

    init(plan: LoadPlan, tokens: [String?], server: sockaddr_in) throws {
        self.plan = plan
        self.tokens = tokens
        self.server = server
        epoll = try Epoll()
        streams = (0..<plan.count).map { _ in LoadStream() }
        memoryGuard = plan.memoryFloorBytes.map { MemoryGuard(floorBytes: $0) }
    }

    deinit {
        for stream in streams where stream.fd >= 0 { Syscall.close(stream.fd) }
        readBuffer.deallocate()
    }

    /// Opens the streams on the plan's timeline, reports progress every second, answers stdin's commands
    /// (`report`, `storm`), and returns when stdin ends.
    func run() throws {
        try Syscall.setNonBlocking(STDIN_FILENO, true)
        try epoll.add(STDIN_FILENO, events: [.readable], token: Self.inputToken)
        startOffer(rate: plan.rampRate, pending: Array(0..<plan.count), at: MonotonicClock.nanoseconds())
        progress.firstAttemptAt = offer?.startedAt ?? 0
        var nextReport = MonotonicClock.nanoseconds() + 1_000_000_000
        while inputOpen {
            for ready in try epoll.wait(timeoutMilliseconds: waitMilliseconds()) {
                if ready.token == Self.inputToken { readCommands() } else { service(Int(ready.token), ready.events) }
            }
            offerDueConnections()
            let now = MonotonicClock.nanoseconds()
            if now >= nextReport {
                LoadProcess.emit(.progress(progress))
                nextReport = now + 1_000_000_000
            }
        }
    }

    // MARK: Offering connections on a timeline

    /// Connections offered at `rate` a second from now, catching up after a late tick: the rate offered does not sag
    /// when the machine is busy (a loop that waits after each connect slows down with the server, and then measures
    /// itself).
    private struct ConnectOffer {
        let startedAt: UInt64
        let rate: Double
        /// The streams to (re)connect, in order.
        var pending: [Int]
        var next = 0
    }

    /// Until the next connection is due (at least 1 ms, at most 100): dozens of load processes offering a few hundred
    /// connections a second each must not wake every millisecond for nothing.
    private func waitMilliseconds() -> CInt {
        guard let offer else { return 100 }
        let dueAt = Double(offer.next) / offer.rate * 1e9 + Double(offer.startedAt)
        let wait = (dueAt - Double(MonotonicClock.nanoseconds())) / 1e6
        return CInt(min(100, max(1, wait.rounded(.up))))
    }

    private func startOffer(rate: Double, pending: [Int], at startedAt: UInt64) {
        offer = ConnectOffer(startedAt: startedAt, rate: rate, pending: pending)
        offerStartCPUSeconds = ProcessCPU.seconds()
    }

    private func startStorm() {
        guard progress.storm == nil else { return }
        var storm = StormProgress()
        var dropped: [Int] = []
        // Dropped first, all of them, then reconnected on the timeline: every client loses its stream at once.
        for index in streams.indices where streams[index].phase == .streaming {
            closeSocket(index)
            streams[index].phase = .waiting
            dropped.append(index)
        }
        storm.dropped = dropped.count
        storm.droppedAt = MonotonicClock.nanoseconds()
        progress.storm = storm
        startOffer(rate: plan.stormRate ?? plan.rampRate, pending: dropped, at: storm.droppedAt)
        reportIfSettled()
    }

    private func offerDueConnections() {
        guard var current = offer else { return }
        let elapsed = Double(MonotonicClock.nanoseconds() - current.startedAt) / 1e9
        var due = min(current.pending.count, Int(elapsed * current.rate) + 1)
        if let limit = plan.maximumConnecting { due = min(due, current.next - connectingCount + limit) }
        while current.next < due {
            if memoryGuard?.allowsMore() == false {
                progress.stoppedByMemoryGuard = true
                current.pending.removeSubrange(current.next...)
                break
            }
            connect(current.pending[current.next])
            current.next += 1
        }
        offer = current
        guard current.next == current.pending.count else { return }
        offer = nil
        if progress.storm == nil {
            progress.done = true
            LoadProcess.emit(.progress(progress))
        } else {
            progress.storm!.dropped = current.pending.count
        }
        reportIfSettled()
    }

    /// Connections of the current offer that have no outcome yet.
    private var connectingCount: Int {
        if let storm = progress.storm { storm.attempted - storm.resumed - storm.failed } else { progress.attempted - progress.established - progress.failed }
    }

    /// Counts a new attempt (or a storm's reconnect) of stream `index` and opens its connection.
    private func connect(_ index: Int) {
        if progress.storm != nil { progress.storm!.attempted += 1 } else { progress.attempted += 1 }
        open(index)
    }

    /// Opens stream `index`'s next connection: its subscribe first in topics mode, else the stream itself, with
    /// its `Last-Event-ID` when it reconnects after a storm.
    private func open(_ index: Int) {
        let globalIndex = plan.firstIndex + index
        let channel = channelName(forIndex: globalIndex)
        let resuming = progress.storm != nil
        var stream = streams[index]
        if !stream.subscribed, plan.subscribesToTopics, let subscribe = plan.target.subscribeRequest(channel: channel, token: tokens[index]) {
            stream.request = subscribe
            stream.phase = .subscribing
        } else {
            stream.request = plan.target.streamRequest(channel: channel, token: tokens[index], lastEventID: resuming ? stream.lastEventID : nil)
            stream.phase = .connecting
        }
        stream.startedAt = MonotonicClock.nanoseconds()
        stream.liveAfter = resuming ? stream.startedAt : 0
        stream.head = []
        do {
            stream.fd = try Syscall.connectNonBlocking(to: server, from: Self.sourceAddress(forIndex: globalIndex))
            streams[index] = stream
            try epoll.add(stream.fd, events: [.readable, .writable, .peerClosed, .edgeTriggered], token: UInt64(index))
        } catch {
            streams[index] = stream
            closeSocket(index)
            fail(index)
        }
    }

    /// Spread over 127.0.0.0/8 (every address there is the loopback), one address per stream for the first 15
    /// million: ephemeral ports never run out, and a server's per-address limits never see two streams of one client.
    static func sourceAddress(forIndex index: Int) -> sockaddr_in {
        let host = index % (254 * 256 * 256)
        // 127.(1 + host / 65,536).(host / 256 % 256).(1 + host % 254), built as a number: no string per connection.
        let octets = (UInt32(127) << 24) | UInt32(1 + host / 65_536) << 16 | UInt32(host / 256 % 256) << 8 | UInt32(1 + host % 254)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = octets.bigEndian
        return address
    }

    private func channelName(forIndex index: Int) -> String {
        plan.channels > 0 ? "bench-\(index % plan.channels)" : "all"
    }

    // MARK: Serving one stream's readiness

    private func service(_ index: Int, _ events: Epoll.Events) {
        switch streams[index].phase {
        case .subscribing, .connecting:
            if events.contains(.writable) { sendRequest(index) }
            if events.contains(.readable) || events.contains(.hangUp) || events.contains(.error) { readResponse(index) }
        case .awaitingAnswer, .awaitingHead, .streaming:
            readResponse(index)
        case .waiting, .closed, .failed:
            return
        }
    }

    private func sendRequest(_ index: Int) {
        let fd = streams[index].fd
        let sent = try? streams[index].request.withUnsafeBytes { try Syscall.send(fd, $0) }
        // A fresh socket's send buffer takes a request of a few hundred bytes whole.
        guard sent == streams[index].request.count else { return drop(index, failed: true) }
        streams[index].request = []
        streams[index].phase = streams[index].phase == .subscribing ? .awaitingAnswer : .awaitingHead
    }

    private func readResponse(_ index: Int) {
        while streams[index].fd >= 0 {
            let read: Int?
            do {
                read = try Syscall.receive(streams[index].fd, into: readBuffer)
            } catch {
                return drop(index, failed: streams[index].phase != .streaming)
            }
            guard let read else { return }
            guard read > 0 else { return drop(index, failed: streams[index].phase != .streaming) }
            consume(index, UnsafeRawBufferPointer(rebasing: readBuffer[0..<read]))
            // A short read drained the socket: edge-triggered epoll reports the next arrival.
            if read < readBuffer.count { return }
        }
    }

    private static let headEnd: [UInt8] = Array("\r\n\r\n".utf8)
    private static let okStatuses = [Array("HTTP/1.1 200".utf8), Array("HTTP/1.0 200".utf8)]

    private static func isOK(_ head: [UInt8]) -> Bool { okStatuses.contains { head.starts(with: $0) } }

    private func consume(_ index: Int, _ bytes: UnsafeRawBufferPointer) {
        switch streams[index].phase {
        case .awaitingAnswer:
            // The status line is all a subscribe's answer is read for; then the stream itself is opened.
            streams[index].head += bytes
            guard streams[index].head.count >= 12 else { return }
            let accepted = Self.isOK(streams[index].head)
            closeSocket(index)
            if accepted {
                streams[index].subscribed = true
                open(index)
            } else {
                fail(index)
            }
        case .awaitingHead:
            streams[index].head += bytes
            guard let end = streams[index].head.firstRange(of: Self.headEnd) else {
                if streams[index].head.count > 16_384 { drop(index, failed: true) }
                return
            }
            guard Self.isOK(streams[index].head) else { return drop(index, failed: true) }
            let body = Array(streams[index].head[end.upperBound...])
            streams[index].head = []
            streams[index].phase = .streaming
            opened(index)
            if !body.isEmpty { body.withUnsafeBytes { deliver(index, $0) } }
        case .streaming:
            deliver(index, bytes)
        default:
            return
        }
    }

    private func opened(_ index: Int) {
        let now = MonotonicClock.nanoseconds()
        if progress.storm != nil {
            progress.storm!.resumed += 1
            progress.storm!.lastResumedAt = now
        } else {
            _ = timeToOpen.record((now - streams[index].startedAt) / 1000)
            progress.established += 1
            progress.lastEstablishedAt = now
        }
        reportIfSettled()
    }

    private func deliver(_ index: Int, _ bytes: UnsafeRawBufferPointer) {
        // The scanner is taken out of the array while it calls back into the same stream's other fields (an
        // access to `streams[index]` inside a call on `streams[index].scanner` would overlap).
        var scanner = streams[index].scanner
        streams[index].scanner = DataLineScanner()
        defer { streams[index].scanner = scanner }
        scanner.feed(bytes) { id in
            streams[index].lastEventID.removeAll(keepingCapacity: true)
            streams[index].lastEventID += id
        } onEvent: { sequence, sentAt in
            let now = MonotonicClock.nanoseconds()
            let micros = now > sentAt ? (now - sentAt) / 1000 : 0
            if let burstFrom = plan.burstFrom, sequence >= burstFrom {
                _ = burstLatency.record(micros)
            } else {
                _ = latency.record(micros)
            }
            if streams[index].liveAfter > 0, sentAt >= streams[index].liveAfter {
                _ = firstLiveLatency.record(micros)
                streams[index].liveAfter = 0
            }
            progress.received += 1
            lastReceivedAt = now
            streams[index].tally.record(sequence)
        }
    }

    /// Ends a stream's connection: a failure when it never opened, a close by the server when it had.
    private func drop(_ index: Int, failed: Bool) {
        closeSocket(index)
        if failed {
            fail(index)
        } else {
            streams[index].phase = .closed
            progress.closed += 1
        }
    }

    private func closeSocket(_ index: Int) {
        guard streams[index].fd >= 0 else { return }
        Syscall.close(streams[index].fd)
        streams[index].fd = -1
    }

    private func fail(_ index: Int) {
        streams[index].phase = .failed
        if progress.storm != nil { progress.storm!.failed += 1 } else { progress.failed += 1 }
        reportIfSettled()
    }

    /// Once every connection of the current offer has an outcome, reports at once (with the CPU it cost), rather
    /// than at the next once-a-second report.
    private func reportIfSettled() {
        if var storm = progress.storm {
            guard offer == nil, storm.cpuSeconds == nil, storm.settled else { return }
            storm.cpuSeconds = ProcessCPU.seconds() - offerStartCPUSeconds
            progress.storm = storm
        } else {
            guard progress.settled, progress.settledCPUSeconds == nil else { return }
            let cpu = ProcessCPU.seconds()
            progress.settledCPUSeconds = cpu
            progress.connectCPUSeconds = cpu - offerStartCPUSeconds
        }
        LoadProcess.emit(.progress(progress))
    }

    // MARK: Commands on stdin

    private func readCommands() {
        while true {
            let read: Int
            do {
                read = try Syscall.read(STDIN_FILENO, into: readBuffer)
            } catch Errno.wouldBlock {
                return
            } catch {
                read = 0
            }
            guard read > 0 else {
                inputOpen = false
                return
            }
            for line in commands.append(UnsafeRawBufferPointer(rebasing: readBuffer[0..<read])) {
                switch line {
                case "report": LoadProcess.emit(.result(result))
                case "storm": startStorm()
                default: FileHandle.standardError.write(Data("load process: unknown command \(line)\n".utf8))
                }
            }
        }
    }

    private var result: LoadResult {
        var uniqueByChannel: [String: Int] = [:]
        var subscribersByChannel: [String: Int] = [:]
        var unique = 0, duplicates = 0, reordered = 0
        var ordersByChannel: [String: [UInt64: Int]] = [:]
        let channels = streams.indices.map { channelName(forIndex: plan.firstIndex + $0) }
        var highestUnique: [String: Int] = [:]
        for (index, stream) in streams.enumerated() { highestUnique[channels[index], default: 0] = max(highestUnique[channels[index], default: 0], stream.tally.unique) }
        for (index, stream) in streams.enumerated() {
            let channel = channels[index]
            if stream.tally.unique > 0, stream.tally.unique == highestUnique[channel] {
                // 53 bits: the result crosses JSON between processes, and larger integers do not survive every decoder.
                let fingerprint = stream.tally.orderFingerprint & ((1 << 53) - 1)
                ordersByChannel[channel, default: [:]][fingerprint, default: 0] += 1
            }
            guard stream.startedAt > 0 else { continue }  // never attempted (the memory guard stopped the run)
            uniqueByChannel[channel, default: 0] += stream.tally.unique
            subscribersByChannel[channel, default: 0] += 1
            unique += stream.tally.unique
            duplicates += stream.tally.duplicates
            reordered += stream.tally.reordered
        }
        return LoadResult(
            progress: progress, unique: unique, duplicates: duplicates, reordered: reordered, uniqueByChannel: uniqueByChannel,
            subscribersByChannel: subscribersByChannel, latency: latency, timeToOpen: timeToOpen, cpuSeconds: ProcessCPU.seconds(),
            lastReceivedAt: lastReceivedAt, ordersByChannel: ordersByChannel,
            firstLiveLatency: progress.storm == nil ? nil : firstLiveLatency, burstLatency: plan.burstFrom == nil ? nil : burstLatency)
    }
}

/// One stream of a load process, from its first connect to the end of the run (a storm reconnects it in place).
struct LoadStream {
    enum Phase {
        /// Not connected yet, or dropped by a storm and waiting for its turn to reconnect.
        case waiting
        /// Connecting to subscribe its user to its topic first (topics mode).
        case subscribing
        case awaitingAnswer
        case connecting
        case awaitingHead
        case streaming
        /// Closed by the server.
        case closed
        case failed
    }

    var fd: CInt = -1
    var phase = Phase.waiting
    /// Its user is subscribed to its topic (topics mode): a reconnect opens the stream straight away.
    var subscribed = false
    /// The request to send once connected.
    var request: [UInt8] = []
    /// Response bytes until the head is complete.
    var head: [UInt8] = []
    var scanner = DataLineScanner()
    var tally = StreamTally()
    /// The last `id:` received: what a reconnect sends as `Last-Event-ID`.
    var lastEventID: [UInt8] = []
    var startedAt: UInt64 = 0
    /// While reconnecting after a storm: the time of the reconnect, until the first event published after it arrives.
    var liveAfter: UInt64 = 0
}

/// Splits stdin into lines.
struct LineBuffer {
    private var pending: [UInt8] = []

    mutating func append(_ bytes: UnsafeRawBufferPointer) -> [String] {
        pending += bytes
        var lines: [String] = []
        while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
            lines.append(String(decoding: pending[..<newline], as: UTF8.self))
            pending.removeSubrange(...newline)
        }
        return lines
    }
}

/// Stops a run from opening streams once the machine's available memory falls under a floor, so a run can never
/// take the machine down. Reads `/proc/meminfo` at most every 100 ms.
struct MemoryGuard {
    let floorBytes: UInt64
    private var checkedAt: UInt64 = 0
    private var lastVerdict = true

    init(floorBytes: UInt64) { self.floorBytes = floorBytes }

    mutating func allowsMore() -> Bool {
        let now = MonotonicClock.nanoseconds()
        guard now - checkedAt >= 100_000_000 else { return lastVerdict }
        checkedAt = now
        lastVerdict = (Self.availableBytes() ?? .max) >= floorBytes
        return lastVerdict
    }

    /// `MemAvailable` from `/proc/meminfo`.
    static func availableBytes() -> UInt64? {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
            let kilobytes = ProcFields.value("MemAvailable:", in: text)
        else { return nil }
        return UInt64(kilobytes) * 1024
    }
}
