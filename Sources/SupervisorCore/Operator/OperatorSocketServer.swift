import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import Shared

/// The operator's local API on its Unix socket (`/run/sse-hub/control` under systemd, root:root 0660, or
/// `--control-socket PATH`; the names stay for compatibility): who may connect is decided by the file's
/// permissions, so no token is asked. `sse-supervisor ctl` is its client (`OperatorClient`). Not to be confused
/// with the supervisor-worker control channel (`ControlChannel`, `ControlMessage`).
///
/// - `GET /status`: the health report with every topic's subscriber count;
/// - `POST /reload`: a reload (as SIGHUP), answered when it is done.
struct OperatorSocketServer: Service {
    let socket: CInt
    let plane: NIOLoopBound<ControlPlane>
    let logger: Logger

    func run() async throws {
        let (plane, responses) = (plane, HTTPResponses(cors: CORSPolicy(allowedOrigins: [])))
        // On the plane's loop, so a request reads the plane directly.
        let server = try await ServerBootstrap(group: plane.eventLoop)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(
                        HTTPResponses.oneRequestCodec() + [OperatorRequestHandler(plane: plane, responses: responses)])
                }
            }
            .withBoundSocket(socket)
            .get()
        try? await gracefulShutdown()
        try? await server.close()
    }
}

/// `GET /status` and `POST /reload`; anything else is a 404. One request per connection.
final class OperatorRequestHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart

    let plane: NIOLoopBound<ControlPlane>
    let responses: HTTPResponses
    private var head: HTTPRequestHead?

    init(plane: NIOLoopBound<ControlPlane>, responses: HTTPResponses) {
        self.plane = plane
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
                responses.json(Status(health: plane.value.health, topics: plane.value.stats.topics), origin: nil, context: context)
            case (.POST, "/reload"):
                plane.value.reload().assumeIsolated().whenComplete { result in
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
        guard error is HTTPParserError, head == nil else { return context.close(promise: nil) }
        responses.error(APIError(status: 400, "Malformed request"), origin: nil, context: context)
    }
}
