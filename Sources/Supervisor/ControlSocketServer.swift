import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import Shared

/// The operator's local API on the control socket (`/run/sse-hub/control` under systemd, root:root 0660, or
/// `--control-socket PATH`): who may connect is decided by the file's permissions, so no token is asked.
/// `sse-supervisor ctl` is its client.
///
/// - `GET /status`: the health report with every topic's subscriber count;
/// - `POST /reload`: a reload (as SIGHUP), answered when it is done.
struct ControlSocketServer: Service {
    let socket: CInt
    let group: any EventLoopGroup
    let pool: WorkerPool
    let reloads: ReloadCoordinator
    let logger: Logger

    func run() async throws {
        let (pool, reloads, responses) = (pool, reloads, HTTPResponses(cors: CORSPolicy(allowedOrigins: [])))
        let server = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(
                        ControlRequestHandler(pool: pool, reloads: reloads, responses: responses))
                }
            }
            .withBoundSocket(socket)
            .get()
        try? await gracefulShutdown()
        try? await server.close()
    }
}

/// `GET /status` and `POST /reload`; anything else is a 404. One request per connection.
final class ControlRequestHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart

    let pool: WorkerPool
    let reloads: ReloadCoordinator
    let responses: HTTPResponses
    private var head: HTTPRequestHead?

    init(pool: WorkerPool, reloads: ReloadCoordinator, responses: HTTPResponses) {
        self.pool = pool
        self.reloads = reloads
        self.responses = responses
    }

    struct Status: Codable {
        var health: HealthBody
        var topics: [String: Int]
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch Self.unwrapInboundIn(data) {
        case .head(let requestHead):
            head = requestHead
        case .body:
            break
        case .end:
            guard let head else { return }
            switch (head.method, head.uri) {
            case (.GET, "/status"):
                responses.json(Status(health: HealthBody(pool), topics: pool.topicCounts), origin: nil, context: context)
            case (.POST, "/reload"):
                let (reloads, promise) = (reloads, context.eventLoop.makePromise(of: Void.self))
                promise.completeWithTask { try await reloads.reload() }
                promise.futureResult.assumeIsolated().whenComplete { result in
                    switch result {
                    case .success:
                        self.responses.json(TopicsResponse(msg: "Reload done", topics: []), origin: nil, context: context)
                    case .failure(let error):
                        self.responses.error(APIError(status: 409, "\(error)"), origin: nil, context: context)
                    }
                }
            default:
                responses.error(.notFound, origin: nil, context: context)
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// Runs reloads one after another, whoever asks (SIGHUP or the control socket).
actor ReloadCoordinator {
    let pool: WorkerPool
    private var previous: Task<Result<Void, ReloadRefused>, Never>?

    init(pool: WorkerPool) { self.pool = pool }

    func reload() async throws(ReloadRefused) {
        let earlier = previous
        let pool = self.pool
        let task = Task { () async -> Result<Void, ReloadRefused> in
            _ = await earlier?.value
            do throws(ReloadRefused) {
                try await pool.reload()
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        previous = task
        try await task.value.get()
    }
}
