import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Shared

/// What the supervisor answers itself: health, the publishers' API, and errors.
struct SupervisorAPI: Sendable {
    let verifier: TokenVerifier
    let pool: WorkerPool
    let responses: HTTPResponses
    let logger: Logger

    /// `{"status":"healthy"|"degraded","services":{"sse":{...}},"workers":[...]}`; 503 while any worker is down.
    func health() -> (HTTPResponseStatus, HealthBody) {
        let body = HealthBody(pool)
        return (body.status == "healthy" ? .ok : .serviceUnavailable, body)
    }

    /// Stats summed over the workers. Each user lives on one shard, so per-topic counts simply add.
    func stats() -> StatsBody {
        StatsBody(totalClients: pool.totals.clients, topics: pool.topicCounts)
    }

    /// Validates a publish body and routes it; the error says what was wrong.
    func publish(body: ByteBuffer) -> Result<EventID, APIError> {
        guard let fields = try? JSONDecoder().decode([String: JSONValue].self, from: Data(body.readableBytesView)) else {
            let isJSON = (try? JSONDecoder().decode(JSONValue.self, from: Data(body.readableBytesView))) != nil
            return .failure(isJSON ? APIError(status: 400, "body must be a JSON object") : .malformedJSON)
        }
        guard case .string(let event)? = fields["event"], HubName.isValidEvent(event) else {
            return .failure(APIError(status: 400, "event must be 1-64 characters [A-Za-z0-9_.:-]"))
        }
        let target: PublishTarget
        switch (fields["topic"], fields["userId"]) {
        case (.some, .some):
            return .failure(APIError(status: 400, "topic and userId cannot be combined"))
        case (.some(let topic), nil):
            guard case .string(let name) = topic, HubName.isValidTopic(name) else {
                return .failure(APIError(status: 400, "topic must be 1-128 characters [A-Za-z0-9_.:-]"))
            }
            target = .topic(name)
        case (nil, .some(let user)):
            guard let userID = user.idString, userID.utf8.count <= Handoff.maximumUserIDBytes else {
                return .failure(APIError(status: 400, "userId must be a non-empty string (at most \(Handoff.maximumUserIDBytes) bytes) or an integer"))
            }
            target = .user(userID)
        case (nil, nil):
            target = .everyone
        }
        return .success(pool.publish(target: target, event: event, data: HubJSON.encode(fields["data"] ?? .null)))
    }
}

struct HealthBody: Codable, Sendable {
    struct Services: Codable, Sendable {
        var sse: Totals
    }
    struct Totals: Codable, Sendable {
        var totalClients: Int
        var totalTopics: Int
    }
    struct Worker: Codable, Sendable {
        var shard: Int
        var pid: Int32?
        var status: String
        var clients: Int
        var topics: Int
        var restarts: Int
    }

    var status: String
    var services: Services
    var workers: [Worker]

    init(_ pool: WorkerPool) {
        let summaries = pool.workers
        let totals = pool.totals
        // A shard whose worker a reload is replacing still serves (the retiring worker holds its streams).
        status = summaries.allSatisfy { $0.slot.status == .up || $0.slot.retiring != nil } ? "healthy" : "degraded"
        services = Services(sse: Totals(totalClients: totals.clients, totalTopics: totals.topics))
        workers = summaries.map {
            Worker(
                shard: $0.slot.shard, pid: $0.slot.pid, status: $0.slot.status.rawValue, clients: $0.clients, topics: $0.topics,
                restarts: $0.slot.restarts)
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
        answered = true
        api.responses.json(body, status: status, origin: origin(head), context: context)
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
                switch handler.api.publish(body: handler.body.body) {
                case .success: handler.answer(SuccessBody(), context: context)
                case .failure(let error): handler.answer(error, context: context)
                }
            }
        case .route(.stream), .route(.subscribe), .route(.unsubscribe):
            // Not reached: `RoutingDecision` hands these to a worker. Refused rather than served without a token check.
            answer(APIError(status: 400, "Malformed request head"), context: context)
        }
    }

    private func authorizePublisher(
        _ head: HTTPRequestHead, context: ChannelHandlerContext,
        then next: (SupervisorHTTPHandler, ChannelHandlerContext) -> Void
    ) {
        let token = TokenLocation.token(
            target: head.uri, authorization: head.headers.first(name: "authorization"),
            xAuthToken: head.headers.first(name: "x-auth-token"))
        switch api.verifier.verifyPublisher(token) {
        case .success: next(self, context)
        case .failure(let failure): answer(APIError(failure), context: context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // The head was read whole by the supervisor's own reader, so what SwiftNIO's parser can still refuse is
        // the body (chunk framing): answered like every other error.
        guard !answered, error is HTTPParserError else { return context.close(promise: nil) }
        answer(APIError(status: 400, "Malformed request body"), context: context)
    }
}
