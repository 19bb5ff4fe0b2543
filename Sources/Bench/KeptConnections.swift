import NIOCore
import NIOHTTP1

/// Publishes the way a backend's HTTP client does: each request on an idle kept connection to its port if there is
/// one, on a new connection otherwise, which is kept for the next request unless the server closes it (the answer
/// says `Connection: close`, as sse-hub's did before it kept publishers' connections). One event loop owns the pool
/// and every connection in it.
final class KeptConnections: Sendable {
    private let loop: any EventLoop
    private let host: String
    private let idle: NIOLoopBoundBox<[Int: [any Channel]]>
    /// Idle connections kept per port: a burst that needed more closes the extra ones as they come back.
    static let idlePerPort = 64

    init(host: String, loop: any EventLoop) {
        self.loop = loop
        self.host = host
        idle = .makeBoxSendingValue([:], eventLoop: loop)
    }

    /// Sends `request` (a whole HTTP/1.1 request without `Connection: close`); completes with the answer's status,
    /// 0 if the connection failed or closed before the answer.
    func send(_ request: ByteBuffer, port: Int) -> EventLoopFuture<Int> {
        loop.flatSubmit { [self] in
            let promise = loop.makePromise(of: Int.self)
            // Skips a connection already closed (the server's idle timeout; Node's is 5 s) and not yet forgotten.
            while let channel = idle.value[port]?.popLast() {
                guard channel.isActive else { continue }
                write(request, on: channel, answer: promise)
                return promise.futureResult
            }
            let connection = RequestSink.connect(host: host, port: port, group: loop) { AnswerHandler(pool: self, port: port) }
            connection.whenComplete { result in
                switch result {
                case .success(let channel): self.write(request, on: channel, answer: promise)
                case .failure: promise.succeed(0)
                }
            }
            return promise.futureResult
        }
    }

    private func write(_ request: ByteBuffer, on channel: any Channel, answer: EventLoopPromise<Int>) {
        guard let handler = try? channel.pipeline.syncOperations.handler(type: AnswerHandler.self), channel.isActive else {
            return answer.succeed(0)  // closed before the request could be written
        }
        handler.awaiting = answer
        RequestSink.send(request, on: channel)
    }

    fileprivate func release(_ channel: any Channel, port: Int) {
        var connections = idle.value[port, default: []]
        guard connections.count < Self.idlePerPort else { return channel.close(promise: nil) }
        connections.append(channel)
        idle.value[port] = connections
    }

    fileprivate func forget(_ channel: any Channel, port: Int) {
        idle.value[port]?.removeAll { $0 === channel }
    }

    /// Completes the request in flight with its answer's status, then gives the connection back, or closes it when
    /// the server said it would.
    private final class AnswerHandler: ChannelInboundHandler {
        typealias InboundIn = HTTPClientResponsePart
        let pool: KeptConnections
        let port: Int
        var awaiting: EventLoopPromise<Int>?
        private var status = 0
        private var closing = false

        init(pool: KeptConnections, port: Int) {
            self.pool = pool
            self.port = port
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch Self.unwrapInboundIn(data) {
            case .head(let head):
                status = Int(head.status.code)
                closing = !head.isKeepAlive
            case .body:
                break
            case .end:
                let answer = awaiting
                awaiting = nil
                if closing { context.close(promise: nil) } else { pool.release(context.channel, port: port) }
                answer?.succeed(status)
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            pool.forget(context.channel, port: port)
            awaiting?.succeed(0)
            awaiting = nil
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }
}
