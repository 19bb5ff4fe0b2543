import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Shared

/// The operator's local API on its Unix socket (`/run/sse-hub/control` under systemd, root:root 0660, or
/// `--control-socket PATH`; the names stay for compatibility): who may connect is decided by the file's
/// permissions, so no token is asked. `sse-supervisor ctl` is its client (`OperatorClient`). Not to be confused
/// with the supervisor-worker control channel (`ControlChannel`, `ControlMessage`).
///
/// The accept thread accepts its connections (`AcceptReactor`) and each is served here, on the plane's loop, so a
/// request reads the plane directly, and a `ctl reload` waiting for its answer is a descriptor an in-place upgrade
/// can carry over to the new program, which answers it.
///
/// - `GET /status`: the health report with every topic's subscriber count, and the running release;
/// - `POST /reload`: a reload (as SIGHUP: an in-place upgrade, then every worker replaced), answered when it is done;
///   `POST /reload?workers-only`: every worker replaced, the supervisor kept;
/// - `GET /stats`: the publishers' stats (`GET /api/sse/stats`); `GET /workers`: every worker process;
/// - `POST /publish`: a publish body, as `POST /api/sse/publish` takes it (the socket's permissions stand for the token).
struct OperatorConnections: Sendable {
    let plane: NIOLoopBound<ControlPlane>
    let api: SupervisorAPI
    let logger: Logger

    /// Serves a connection just accepted.
    func serve(_ fd: CInt) {
        adopt(fd, awaiting: nil)
    }

    /// Answers, once `reload` completes, a `ctl reload` the previous program of this process took (in-place upgrade).
    func answer(_ fd: CInt, when reload: EventLoopFuture<Void>) {
        adopt(fd, awaiting: reload)
    }

    private func adopt(_ fd: CInt, awaiting reload: EventLoopFuture<Void>?) {
        let (plane, api, logger) = (plane, api, logger)
        ClientBootstrap(group: plane.eventLoop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let handler = OperatorRequestHandler(plane: plane, api: api, fd: fd, awaiting: reload)
                    try channel.pipeline.syncOperations.addHandlers(HTTPResponses.oneRequestCodec() + [handler])
                }
            }
            .withConnectedSocket(fd)
            .whenFailure { error in
                logger.warning("cannot adopt an operator connection", metadata: ["error": "\(error)"])
            }
    }
}

/// `GET /status`, `POST /reload`, `GET /stats`, `GET /workers`, `POST /publish`; anything else is a 404. One request
/// per connection.
final class OperatorRequestHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart

    let plane: NIOLoopBound<ControlPlane>
    let api: SupervisorAPI
    let responses = HTTPResponses(cors: CORSPolicy(allowedOrigins: []))
    /// The connection's descriptor: a reload carries it over an in-place upgrade.
    let fd: CInt
    private var head: HTTPRequestHead?
    private var body = BodyCollector()
    private var awaiting: EventLoopFuture<Void>?
    /// Answered from its head alone (an unmet `Expect`): the rest of the request is not read.
    private var refused = false

    init(plane: NIOLoopBound<ControlPlane>, api: SupervisorAPI, fd: CInt, awaiting: EventLoopFuture<Void>?) {
        self.plane = plane
        self.api = api
        self.fd = fd
        self.awaiting = awaiting
    }

    struct Status: Codable {
        var supervisor: SupervisorInfo
        var health: HealthBody
        var topics: [String: Int]
    }

    func channelActive(context: ChannelHandlerContext) {
        context.fireChannelActive()
        if let awaiting { answer(awaiting, context: context) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard awaiting == nil, !refused else { return }
        switch Self.unwrapInboundIn(data) {
        case .head(let requestHead):
            head = requestHead
            if let unmet = responses.meetExpectation(of: requestHead, context: context) {
                refused = true
                responses.error(unmet, origin: nil, context: context)
            }
        case .body(let chunk):
            body.append(chunk)
        case .end:
            guard let head else { return }
            guard !body.overflowed else { return responses.error(.bodyTooLarge, origin: nil, context: context) }
            let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
            switch (head.method, path) {
            case (.GET, "/status"):
                let plane = plane.value
                responses.json(Status(supervisor: plane.supervisorInfo, health: plane.health, topics: plane.stats.topics), origin: nil, context: context)
            case (.POST, "/reload"):
                let kind: ReloadKind = head.uri.hasSuffix("?workers-only") ? .workersOnly : .upgrade
                let reload = plane.value.reload(kind, answeringOperatorAt: fd)
                awaiting = reload
                answer(reload, context: context)
            case (.GET, "/stats"):
                responses.json(api.stats(), origin: nil, context: context)
            case (.GET, "/workers"):
                responses.json(plane.value.workerRows, origin: nil, context: context)
            case (.POST, "/publish"):
                let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                api.publish(body: body.body).whenSuccess { result in
                    let (handler, context) = bound.value
                    switch result {
                    case .success(let id): handler.responses.json(PublishedAnswer(id: id.description), origin: nil, context: context)
                    case .failure(let error): handler.responses.error(error, origin: nil, context: context)
                    }
                }
            default:
                responses.error(.notFound, origin: nil, context: context)
            }
        }
    }

    private func answer(_ reload: EventLoopFuture<Void>, context: ChannelHandlerContext) {
        reload.assumeIsolated().whenComplete { [plane, responses] result in
            switch result {
            case .success:
                let info = plane.value.supervisorInfo
                responses.json(
                    ReloadAnswer(msg: "Reload done: release \(info.release), upgraded in place \(info.upgrades) times", supervisor: info),
                    origin: nil, context: context)
            case .failure(let error as ReloadRefused):
                responses.json(
                    ReloadAnswer(success: false, msg: "\(error)", code: error.code, supervisor: plane.value.supervisorInfo),
                    status: .conflict, origin: nil, context: context)
            case .failure(let error):
                responses.error(APIError(status: 500, "\(error)"), origin: nil, context: context)
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard error is HTTPParserError, head == nil else { return context.close(promise: nil) }
        responses.error(APIError(status: 400, "Malformed request"), origin: nil, context: context)
    }
}

/// `ctl publish`'s answer: the event's id, which the streams carry as `id:`.
struct PublishedAnswer: Codable {
    var success = true
    var id: String
}

/// `ctl reload`'s answer.
struct ReloadAnswer: Codable {
    var success = true
    var msg: String
    /// A refusal's stable code (`reload.*`, `upgrade.*`): nothing was changed.
    var code: String?
    var supervisor: SupervisorInfo
}

/// The running supervisor, as `ctl status` shows it.
struct SupervisorInfo: Codable, Sendable {
    var release: String
    var pid: Int32
    /// How many times this process re-executed itself into a new release (`systemctl reload`).
    var upgrades: Int
    /// When this process first started, and when its current program started (ms since 1970).
    var startedAt: Int64
    var runningSince: Int64
    var protocols: String
}
