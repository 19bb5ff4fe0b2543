import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Shared
import TestSupport
import Synchronization

/// What a test connection has seen so far.
struct ConnectionState: Sendable {
    var status: Int?
    var headers: [String: String] = [:]
    var body: [UInt8] = []
    var parser = SSEEventParser()
    var events: [SSEEvent] = []
    var ended = false
    var closed = false
    /// Every response completed so far, in order (a kept connection carries several).
    var responses: [TestHTTP.Response] = []
    var responseBodyStart = 0
    /// Interim (1xx) answers' statuses, in order: `100 Continue` to a request that waits for it.
    var interim: [Int] = []
}

/// The state, shared between the channel's handler and the test.
final class ConnectionRecord: Sendable {
    let state = Mutex(ConnectionState())
}

/// A client connection that writes raw request bytes (so tests control every byte) and decodes the
/// response with SwiftNIO's HTTP/1 client decoder.
final class TestConnection: Sendable {
    let channel: any Channel
    let record: ConnectionRecord

    private init(channel: any Channel, record: ConnectionRecord) {
        self.channel = channel
        self.record = record
    }

    private final class Recorder: ChannelInboundHandler, Sendable {
        typealias InboundIn = HTTPClientResponsePart
        let record: ConnectionRecord

        init(_ record: ConnectionRecord) { self.record = record }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let part = Self.unwrapInboundIn(data)
            record.state.withLock { state in
                switch part {
                case .head(let head) where (100..<200).contains(head.status.code) && head.status != .switchingProtocols:
                    state.interim.append(Int(head.status.code))
                case .head(let head):
                    state.status = Int(head.status.code)
                    state.headers = [:]
                    for (name, value) in head.headers { state.headers[name.lowercased()] = value }
                case .body(let buffer):
                    state.body += buffer.readableBytesView
                    state.events += state.parser.feed(buffer.readableBytesView)
                case .end:
                    state.ended = true
                    state.responses.append(
                        TestHTTP.Response(status: state.status ?? 0, headers: state.headers, body: Array(state.body[state.responseBodyStart...])))
                    state.responseBodyStart = state.body.count
                }
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            record.state.withLock { $0.closed = true }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }

    /// Connects to the hub on `port`, from `source` when given (another loopback address, as another client).
    static func open(port: Int, from source: String? = nil) async throws -> TestConnection {
        let record = ConnectionRecord()
        var bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        if let source { bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: source, port: 0)) }
        let channel = try await bootstrap
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        RawSender(),
                        ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .dropBytes, informationalResponseStrategy: .forward)),
                        Recorder(record),
                    ])
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return TestConnection(channel: channel, record: record)
    }

    var snapshot: ConnectionState { record.state.withLock { $0 } }

    /// Sends `bytes`, which hold `requests` requests (more than one: pipelined).
    func send(_ bytes: [UInt8], requests: Int = 1) async throws {
        // The response decoder pairs each response with a request it saw written: tell it about these.
        for _ in 0..<requests {
            channel.write(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: "/")), promise: nil)
        }
        let promise = channel.eventLoop.makePromise(of: Void.self)
        channel.pipeline.fireUserInboundEventTriggered(RawSender.Send(bytes: ByteBuffer(bytes: bytes), promise: promise))
        try await promise.futureResult.get()
    }

    /// Sits next to the socket: raw request bytes start here, bypassing the response decoder, and the
    /// request parts written only to inform that decoder end here.
    private final class RawSender: ChannelDuplexHandler, Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundIn = HTTPClientRequestPart
        typealias OutboundOut = ByteBuffer

        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            promise?.succeed()
        }

        struct Send: Sendable {
            var bytes: ByteBuffer
            var promise: EventLoopPromise<Void>
        }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if let send = event as? Send {
                context.writeAndFlush(Self.wrapOutboundOut(send.bytes), promise: send.promise)
            } else {
                context.fireUserInboundEventTriggered(event)
            }
        }
    }

    func close() async {
        try? await channel.close()
    }

    /// Waits until `count` responses have completed on this connection; returns them all, in order.
    func responses(_ count: Int, timeout: Duration = .seconds(10)) async throws -> [TestHTTP.Response] {
        try await waitUntil("\(count) responses", timeout: timeout) {
            let state = self.snapshot
            if state.closed && state.responses.count < count {
                throw TimedOut(description: "connection closed after \(state.responses.count) of \(count) responses")
            }
            return state.responses.count >= count
        }
        return snapshot.responses
    }

    /// Waits until the response is complete (or the connection closed after a status line).
    func response(timeout: Duration = .seconds(10)) async throws -> TestHTTP.Response {
        try await waitUntil("a response", timeout: timeout) {
            let state = self.snapshot
            return state.ended || (state.closed && state.status != nil) || state.closed
        }
        let state = snapshot
        guard let status = state.status else { throw TimedOut(description: "connection closed without a response") }
        return TestHTTP.Response(status: status, headers: state.headers, body: state.body)
    }
}

enum TestHTTP {
    struct Response: Sendable {
        var status: Int
        var headers: [String: String]
        var body: [UInt8]

        var text: String { String(decoding: body, as: UTF8.self) }

        /// The body as a JSON object.
        var json: [String: JSONValue] {
            (try? JSONDecoder().decode([String: JSONValue].self, from: Data(body))) ?? [:]
        }

        var message: String? {
            if case .string(let message)? = json["msg"] { return message }
            return nil
        }
    }

    static func requestBytes(
        _ method: String, _ target: String, headers: [String: String] = [:], body: String? = nil
    ) -> [UInt8] {
        var text = "\(method) \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        for (name, value) in headers.sorted(by: { $0.key < $1.key }) { text += "\(name): \(value)\r\n" }
        if let body { text += "Content-Length: \(body.utf8.count)\r\n" }
        text += "\r\n" + (body ?? "")
        return Array(text.utf8)
    }

    /// One request on a new connection; returns the whole response.
    static func request(
        port: Int, _ method: String, _ target: String, headers: [String: String] = [:], body: String? = nil, from source: String? = nil
    ) async throws -> Response {
        try await raw(port: port, requestBytes(method, target, headers: headers, body: body), from: source)
    }

    static func raw(port: Int, _ bytes: [UInt8], from source: String? = nil) async throws -> Response {
        let connection = try await TestConnection.open(port: port, from: source)
        defer { Task { await connection.close() } }
        try await connection.send(bytes)
        return try await connection.response()
    }
}

/// An open `GET /api/sse/stream`, collecting events as they arrive.
struct SSETestStream: Sendable {
    let connection: TestConnection

    static func open(port: Int, target: String, headers: [String: String] = [:]) async throws -> SSETestStream {
        let connection = try await TestConnection.open(port: port)
        try await connection.send(TestHTTP.requestBytes("GET", target, headers: headers.merging(["Accept": "text/event-stream"]) { a, _ in a }))
        return SSETestStream(connection: connection)
    }

    var events: [SSEEvent] { connection.snapshot.events }
    var isClosed: Bool { connection.snapshot.closed }

    func events(named name: String) -> [SSEEvent] { events.filter { $0.event == name } }

    @discardableResult
    func waitForEvent(_ name: String, count: Int = 1, timeout: Duration = .seconds(10)) async throws -> [SSEEvent] {
        try await waitUntil("\(count) \(name) event(s)", timeout: timeout) {
            if self.isClosed && self.events(named: name).count < count {
                throw TimedOut(description: "stream closed before \(count) \(name) event(s); saw \(self.events)")
            }
            return self.events(named: name).count >= count
        }
        return events(named: name)
    }

    func waitForClose(timeout: Duration = .seconds(10)) async throws {
        try await waitUntil("the stream to close", timeout: timeout) { self.isClosed }
    }

    func close() async { await connection.close() }
}
