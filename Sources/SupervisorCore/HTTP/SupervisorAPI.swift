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

/// One request on a connection the supervisor serves itself. The connection closes after the answer.
final class SupervisorHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let api: SupervisorAPI
    private let disposition: LocalHTTPServer.Disposition
    private let requestTimeout: TimeAmount
    private var head: HTTPRequestHead?
    private var body = BodyCollector()
    private var answered = false

    init(api: SupervisorAPI, disposition: LocalHTTPServer.Disposition, requestTimeout: TimeAmount) {
        self.api = api
        self.disposition = disposition
        self.requestTimeout = requestTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        ConnectionDeadline.schedule(context, after: requestTimeout) { [self] in
            if answered { context.close(promise: nil) } else { answer(.requestTimeout, context: context) }
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !answered else { return }
        switch Self.unwrapInboundIn(data) {
        case .head(let requestHead):
            head = requestHead
            if body.refuses(requestHead) { answer(.bodyTooLarge, context: context) }
        case .body(let chunk):
            if !body.append(chunk) { answer(.bodyTooLarge, context: context) }
        case .end:
            if let head { handle(head, context: context) }
        }
    }

    private func origin(_ head: HTTPRequestHead?) -> String? { head?.headers.first(name: "origin") }

    private func answer(_ error: APIError, context: ChannelHandlerContext) {
        answered = true
        api.responses.error(error, origin: origin(head), context: context)
    }

    private func answer(_ body: some Encodable, status: HTTPResponseStatus = .ok, context: ChannelHandlerContext) {
        answer(encoded: HubJSON.encode(body), status: status, context: context)
    }

    private func answer(encoded body: String, status: HTTPResponseStatus = .ok, context: ChannelHandlerContext) {
        answered = true
        api.responses.json(encoded: body, status: status, origin: origin(head), context: context)
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
            // Not reached: `RoutingDecision` hands these to a worker. Refused rather than served without a token check.
            answer(APIError(status: 400, "Malformed request head"), context: context)
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
        case .success: next(self, context)
        case .failure(let failure):
            api.logger.debug("publisher token refused", metadata: AuthLog.metadata(failure))
            answer(APIError(failure), context: context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // The head was read whole by the supervisor's own reader, so what SwiftNIO's parser can still refuse is
        // the body (chunk framing): answered like every other error.
        guard !answered, error is HTTPParserError else { return context.close(promise: nil) }
        answer(APIError(status: 400, "Malformed request body"), context: context)
    }
}
