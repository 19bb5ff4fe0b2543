import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Shared

/// What the supervisor answers itself: health, and the publishers' API. Called on the control plane's loop
/// (the supervisor's one event loop serves these connections too).
struct SupervisorAPI: Sendable {
    /// Verifies the publishers' tokens, remembering them: a backend presents the same one publish after publish.
    let publisherTokens: NIOLoopBound<CachingTokenVerifier>
    let plane: NIOLoopBound<ControlPlane>
    let responses: HTTPResponses
    let logger: Logger

    /// 503 while any shard is not serving.
    func health() -> (HTTPResponseStatus, HealthBody) {
        let body = plane.value.health
        return (body.status == "healthy" ? .ok : .serviceUnavailable, body)
    }

    /// Stats summed over the workers (each user lives on one shard, so per-topic counts simply add), and over the
    /// hosts of a hub that spans several.
    func stats() -> StatsBody { plane.value.hubStats }

    /// Validates a publish body and publishes it (`ControlPlane.submit`). The error says what was wrong.
    func publish(body: ByteBuffer) -> EventLoopFuture<Result<EventID, APIError>> {
        let metrics = plane.value.metrics
        switch PublishRequest.parse(body) {
        case .failure(let error):
            metrics.published(.unknown, .refused)
            return plane.eventLoop.makeSucceededFuture(.failure(error))
        case .success(let request):
            let kind = HostMetrics.PublishKind(request.target)
            return plane.value.submit(request).map { result in
                metrics.published(kind, (try? result.get()) == nil ? .unavailable : .accepted)
                return result
            }
        }
    }
}

/// The requests of a connection the supervisor serves itself. The connection closes after the answer, except after
/// a publisher's (its token verified, the request read whole, HTTP/1.1 keep-alive): then it stays open for the next
/// request, up to `keepAliveTimeout` idle, so a backend that publishes often pays for one connection, not one a
/// publish. `HTTPServerPipelineHandler`, in front, holds a pipelined request back until the one before is answered.
/// An in-place upgrade drains the connections (`OpenConnections.Drain`): a kept one between requests closes at once,
/// any other after its answer.
final class SupervisorHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let api: SupervisorAPI
    private let disposition: LocalHTTPServer.Disposition
    private let requestTimeout: TimeAmount
    /// `--keepalive-timeout`; nil: every answer closes its connection.
    private let keepAliveTimeout: TimeAmount?
    private var head: HTTPRequestHead?
    private var body = BodyCollector()
    private var answered = false
    /// This request arrived whole (its `.end`): an answer before that leaves bytes unread, so it closes.
    private var requestComplete = false
    /// This request's publisher token verified: only then may its answer keep the connection.
    private var publisherVerified = false
    /// Requests answered on this connection before the current one (later ones never passed the accept thread).
    private var requestsAnswered = 0
    /// Asked to finish (`OpenConnections.Drain`): no answer keeps the connection any more.
    private var draining = false
    /// The current request's deadline, or the kept connection's idle one.
    private var deadline: Scheduled<Void>?

    init(api: SupervisorAPI, disposition: LocalHTTPServer.Disposition, requestTimeout: TimeAmount, keepAliveTimeout: TimeAmount?) {
        self.api = api
        self.disposition = disposition
        self.requestTimeout = requestTimeout
        self.keepAliveTimeout = keepAliveTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        awaitRequest(context: context)
    }

    /// The timer goes with the connection: it must not keep the pipeline and a request body alive (it did, for 30 s,
    /// which made a burst of publishes of 60 KB hold 300 MB in the supervisor).
    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
    }

    /// A request must arrive whole within `requestTimeout` of its start (or of the connection's, for the first).
    private func awaitRequest(context: ChannelHandlerContext) {
        setDeadline(after: requestTimeout, context: context) { handler, context in
            if handler.answered { context.close(promise: nil) } else { handler.answer(.requestTimeout, context: context) }
        }
    }

    private func setDeadline(
        after timeout: TimeAmount, context: ChannelHandlerContext, expired: @escaping (SupervisorHTTPHandler, ChannelHandlerContext) -> Void
    ) {
        deadline?.cancel()
        deadline = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [self] in expired(self, context) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is OpenConnections.Drain else { return context.fireUserInboundEventTriggered(event) }
        draining = true
        // Between two requests of a kept connection (its next head not arrived): nothing is owed, so it closes. A
        // connection that has not answered its first request yet owes that answer, even if none of it was read.
        if requestsAnswered > 0, head == nil, !answered { context.close(promise: nil) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !answered else { return }
        switch Self.unwrapInboundIn(data) {
        case .head(let requestHead):
            head = requestHead
            if requestsAnswered > 0 { awaitRequest(context: context) }
            if let refusal = api.responses.refusalBeforeBody(of: requestHead, collecting: body, context: context) {
                answer(refusal, context: context)
            }
        case .body(let chunk):
            if !body.append(chunk) { answer(.bodyTooLarge, context: context) }
        case .end:
            requestComplete = true
            if let head { handle(head, context: context) }
        }
    }

    private func origin(_ head: HTTPRequestHead?) -> String? { head?.headers.first(name: "origin") }

    private func answer(_ error: APIError, context: ChannelHandlerContext) {
        let (origin, keepAlive) = (origin(head), finishRequest(context: context))
        api.responses.error(error, origin: origin, keepAlive: keepAlive, context: context)
    }

    private func answer(_ body: some Encodable, status: HTTPResponseStatus = .ok, context: ChannelHandlerContext) {
        answer(encoded: HubJSON.encode(body), status: status, context: context)
    }

    private func answer(encoded body: String, status: HTTPResponseStatus = .ok, context: ChannelHandlerContext) {
        let (origin, keepAlive) = (origin(head), finishRequest(context: context))
        api.responses.json(encoded: body, status: status, origin: origin, keepAlive: keepAlive, context: context)
    }

    /// Called as the answer is about to be written. A connection that stays open is made ready for the next request
    /// first (the pipeline handler may hand it over while the answer is written), and closed if it idles too long.
    /// Returns the idle timeout to announce, or nil if the answer closes the connection.
    private func finishRequest(context: ChannelHandlerContext) -> TimeAmount? {
        guard let keepAliveTimeout, !draining, publisherVerified, requestComplete, let head, head.version == .http1_1, head.isKeepAlive else {
            answered = true
            return nil
        }
        self.head = nil
        body = BodyCollector()
        answered = false
        requestComplete = false
        publisherVerified = false
        requestsAnswered += 1
        setDeadline(after: keepAliveTimeout, context: context) { _, context in context.close(promise: nil) }
        return keepAliveTimeout
    }

    private func handle(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        if case .reject(let error) = disposition {
            return answer(error, context: context)
        }
        switch APIRoute.resolve(method: head.method, target: head.uri) {
        case .notFound:
            answer(.notFound, context: context)
        case .methodNotAllowed(let route):
            answer(.methodNotAllowed(route), context: context)
        case .preflight(let route):
            guard api.responses.cors.isEnabled else { return answer(.methodNotAllowed(route), context: context) }
            answered = true
            api.responses.preflight(route: route, origin: origin(head), context: context)
        case .route(.health):
            let (status, body) = api.health()
            answer(body, status: status, context: context)
        case .route(.stats):
            authorizePublisher(head, context: context) { handler, context in
                handler.answer(handler.api.stats(), context: context)
            }
        case .route(.publish):
            authorizePublisher(head, context: context) { handler, context in
                // Answered once published (a shared log commits first); the deadline only closes the connection now.
                handler.answered = true
                let bound = NIOLoopBound((handler, context), eventLoop: context.eventLoop)
                handler.api.publish(body: handler.body.body).whenSuccess { result in
                    let (handler, context) = bound.value
                    guard context.channel.isActive else { return }
                    switch result {
                    case .success: handler.answer(encoded: SuccessBody.encoded, context: context)
                    case .failure(let error): handler.answer(error, context: context)
                    }
                }
            }
        case .route(.presence):
            authorizePublisher(head, context: context) { handler, context in
                let request: PresenceRequest
                switch PresenceRequest.parse(target: head.uri) {
                case .failure(let error): return handler.answer(error, context: context)
                case .success(let parsed): request = parsed
                }
                handler.answered = true
                let bound = NIOLoopBound((handler, context), eventLoop: context.eventLoop)
                handler.api.plane.value.presence(request.subject, after: request.cursor, limit: request.limit).whenSuccess { result in
                    let (handler, context) = bound.value
                    guard context.channel.isActive else { return }
                    switch result {
                    case .success(let page): handler.answer(presence: page, for: request.subject, context: context)
                    case .failure(let error): handler.answer(error, context: context)
                    }
                }
            }
        case .route(.stream), .route(.subscribe), .route(.unsubscribe):
            // A first request of these never gets here (`RoutingDecision` hands it to a worker, with the connection).
            // A later one on a kept connection cannot follow: RFC 9110's 421 tells the client to send it on another.
            guard requestsAnswered > 0 else { return answer(APIError(status: 400, "Malformed request head"), context: context) }
            answer(
                APIError(status: 421, "Stream and topic requests need a connection of their own; send this one on a new connection"),
                context: context)
        }
    }

    private func answer(presence page: PresencePage, for subject: PresenceQuery.Subject, context: ChannelHandlerContext) {
        switch subject {
        case .topic(let topic):
            let users = zip(page.names, page.counts).map { TopicPresenceBody.User(userId: $0, streams: Int($1)) }
            answer(TopicPresenceBody(topic: topic, users: users, nextCursor: page.nextCursor), context: context)
        case .user(let userID):
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            let since = page.since.map { formatter.string(from: Date(timeIntervalSince1970: Double($0) / 1000)) }
            answer(
                UserPresenceBody(
                    userId: userID, online: page.streams > 0, streams: Int(page.streams), since: since, topics: page.names,
                    nextCursor: page.nextCursor),
                context: context)
        }
    }

    private func authorizePublisher(
        _ head: HTTPRequestHead, context: ChannelHandlerContext,
        then next: (SupervisorHTTPHandler, ChannelHandlerContext) -> Void
    ) {
        let token = TokenLocation.token(
            target: head.uri, authorization: head.headers.first(name: "authorization"),
            xAuthToken: head.headers.first(name: "x-auth-token"))
        switch api.publisherTokens.value.verifyPublisher(token) {
        case .success:
            publisherVerified = true
            next(self, context)
        case .failure(let failure):
            api.logger.debug("publisher token refused", metadata: AuthLog.metadata(failure))
            answer(APIError(failure), context: context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A first request's head was read whole by the supervisor's own reader, so what SwiftNIO's parser can still
        // refuse there is the body (chunk framing); a later request's head is SwiftNIO's alone to read. Answered like
        // every other error, and the connection closes.
        guard !answered, error is HTTPParserError else {
            api.logger.debug("a connection the supervisor serves failed; closed", metadata: ["error": "\(error)"])
            return context.close(promise: nil)
        }
        publisherVerified = false
        if case .headerOverflow = error as? HTTPParserError {
            return answer(.headTooLarge, context: context)
        }
        answer(APIError(status: 400, head == nil ? "Malformed request head" : "Malformed request body"), context: context)
    }
}
