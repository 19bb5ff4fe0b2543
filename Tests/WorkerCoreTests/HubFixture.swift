import Logging
import NIOCore
import NIOEmbedded
import Shared
import TestSupport
@testable import WorkerCore

/// A real `StreamHub` on an `EmbeddedEventLoop`, with streams opened the way `HandoffReceiver` opens them: a real
/// socket adopted by a `StreamSockets`, started with a hand-off.
final class HubFixture {
    static let epoch: UInt64 = 1_700_000_000_000
    let loop = EmbeddedEventLoop()
    let hub: StreamHub
    let sockets: StreamSockets
    /// What the hub sent the supervisor, once started.
    private(set) var sent: [ControlMessage] = []
    private var sequence: UInt64 = 0

    init(historySize: Int = 1000, cors: CORSPolicy = CORSPolicy(allowedOrigins: [])) {
        hub = StreamHub(
            eventLoop: loop,
            settings: .init(
                heartbeat: .seconds(30), topicGrace: .seconds(300), epoch: Self.epoch, historySize: historySize,
                historyTTL: 600_000, historyBytes: 1 << 20, maximumTopicsPerUser: 256, retryMilliseconds: 3000),
            logger: Logger(label: "test"))
        sockets = try! embeddedSockets(on: loop)
        self.cors = cors
        sockets.onClosed = { [hub] socket in hub.detach(socket: socket) }
    }

    let cors: CORSPolicy

    func start() {
        hub.start { [unowned self] message in sent.append(message) }
    }

    func takeSent() -> [ControlMessage] {
        defer { sent = [] }
        return sent
    }

    /// The supervisor's history before this worker started is complete (and empty, unless recorded).
    func historyArrived() {
        hub.historyComplete(HistoryBounds(evictedThrough: 0, latestSequence: sequence))
    }

    static func id(_ sequence: UInt64) -> String { EventID(epoch: epoch, sequence: sequence).description }

    /// The next event, as the supervisor numbers them.
    func nextEvent(_ target: PublishTarget, _ name: String = "e") -> PublishCommand {
        sequence += 1
        return PublishCommand(target: target, event: name, data: #"{"n":\#(sequence)}"#, sequence: sequence, publishedAt: WallClock.milliseconds())
    }

    /// Publishes events as one control-channel read delivers them: queued, then flushed together.
    func publish(_ targets: PublishTarget..., flush: Bool = true) {
        for target in targets { hub.publish(nextEvent(target)) }
        if flush { hub.flushPublished() }
    }

    func openStream(_ userID: String, lastEventID: String? = nil, origin: String? = nil, tokenExpiry: Int64? = nil) throws -> StreamClient {
        let (socket, client) = try StreamClient.connected(to: sockets, as: userID)
        hub.attach(
            userID: userID, socket: socket, lastEventID: lastEventID, tokenExpiry: tokenExpiry,
            responseHead: StreamPreamble.responseHead(cors: cors, origin: origin))
        return client
    }

    func migrateIn(_ userID: String, resumeAfter: UInt64?, tokenExpiry: Int64? = nil) throws -> StreamClient {
        let (socket, client) = try StreamClient.connected(to: sockets, as: userID)
        hub.attachMigrated(socket: socket, handoff: Handoff(route: .migrated, userID: userID, tokenExpiry: tokenExpiry, resumeAfter: resumeAfter))
        return client
    }
}

/// What a stream's client received: the response head (if any), the events of the chunked body, and whether the body ended.
struct Received {
    var head: String?
    var body = ""
    var events: [SSEEvent] = []
    var ended = false

    /// The ids of the published events (`e`); the parser carries an id over to later events, as browsers do.
    var ids: [String] { events.filter { $0.event == "e" }.compactMap(\.id) }
    var names: [String] { events.map(\.event) }

    /// Reads what the stream's server sent since the last read.
    init(_ client: StreamClient) throws {
        let bytes = try client.read().bytes
        var text = String(buffer: bytes)
        if text.hasPrefix("HTTP/1.1"), let end = text.range(of: "\r\n\r\n") {
            head = String(text[..<end.upperBound])
            text = String(text[end.upperBound...])
        }
        // Chunks: `<hex size>\r\n<bytes>\r\n`; size 0 ends the body.
        var rest = Substring(text)
        while let lineEnd = rest.range(of: "\r\n"), let size = Int(rest[..<lineEnd.lowerBound], radix: 16) {
            if size == 0 {
                ended = true
                break
            }
            let payload = rest.utf8[lineEnd.upperBound...].prefix(size)
            body += String(decoding: payload, as: UTF8.self)
            rest = Substring(rest.utf8[payload.endIndex...].dropFirst(2))
        }
        var parser = SSEEventParser()
        events = parser.feed(body.utf8)
    }
}
