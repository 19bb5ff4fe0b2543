import NIOCore
import NIOHTTP1
import Shared

/// Serves the one request of a subscribe or unsubscribe connection the supervisor handed over, after which
/// the connection closes (a later request may be another user's). The request is still in the socket: the
/// supervisor only peeked at it, and SwiftNIO's parser reads it here, body and all. (Streams take another
/// path: see `StreamSocket`.)
final class TopicRequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let handoff: Handoff
    private let hub: NIOLoopBound<StreamHub>
    private let responses: HTTPResponses
    private let requestTimeout: TimeAmount
    private var head: HTTPRequestHead?
    private var body = BodyCollector()
    private var state = State.awaitingRequest

    private enum State {
        /// The request is changed, its answer waits for the hub's log (`--hub-wide-users`).
        case awaitingRequest, awaitingLog, done
    }

    init(handoff: Handoff, hub: NIOLoopBound<StreamHub>, responses: HTTPResponses, requestTimeout: TimeAmount) {
        self.handoff = handoff
        self.hub = hub
        self.responses = responses
        self.requestTimeout = requestTimeout
    }

    /// The handlers of a handed-over connection, in pipeline order.
    static func handlers(
        handoff: Handoff, hub: NIOLoopBound<StreamHub>, responses: HTTPResponses, requestTimeout: TimeAmount
    ) -> [any ChannelHandler] {
        HTTPResponses.oneRequestCodec(forwardingLeftOverBytes: true) + [
            TopicRequestHandler(handoff: handoff, hub: hub, responses: responses, requestTimeout: requestTimeout)
        ]
    }

    /// A request whose body never comes must not hold a descriptor of this worker: one token could otherwise
    /// open connections until the worker, and every stream on it, ran out.
    func handlerAdded(context: ChannelHandlerContext) {
        ConnectionDeadline.schedule(context, after: requestTimeout) { [self] in
            switch state {
            case .awaitingRequest: fail(.requestTimeout, context: context)
            case .awaitingLog: fail(.topicsNotLogged, context: context)
            case .done: context.close(promise: nil)
            }
        }
    }

    /// A closed connection's answer from the log finds nothing to write to.
    func handlerRemoved(context: ChannelHandlerContext) {
        state = .done
    }

    private var origin: String? { head?.headers.first(name: "origin") }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard state == .awaitingRequest else { return }
        switch Self.unwrapInboundIn(data) {
        case .head(let requestHead):
            head = requestHead
            guard case .route(let route) = APIRoute.resolve(method: requestHead.method, target: requestHead.uri),
                route.handoffRoute == handoff.route
            else {
                // The supervisor's reading of the head and SwiftNIO's disagree: serve nothing on a guess.
                return fail(APIError(status: 400, "Malformed request head"), context: context)
            }
            if let refusal = responses.refusalBeforeBody(of: requestHead, collecting: body, context: context) {
                fail(refusal, context: context)
            }
        case .body(let chunk):
            if !body.append(chunk) { fail(.bodyTooLarge, context: context) }
        case .end:
            guard head != nil else { return }
            changeTopics(context: context)
        }
    }

    private func fail(_ error: APIError, context: ChannelHandlerContext) {
        state = .done
        responses.error(error, origin: origin, context: context)
    }

    private func changeTopics(context: ChannelHandlerContext) {
        let topics: [String]
        switch TopicsRequestBody.parse(body.body) {
        case .success(let parsed): topics = parsed
        case .failure(let error): return fail(error, context: context)
        }
        let message: String
        if handoff.route == .subscribe {
            do {
                try hub.value.subscribe(userID: handoff.userID, topics: topics)
            } catch {
                return fail(.tooManyTopics(limit: error.limit), context: context)
            }
            message = "Subscribed to topics"
        } else {
            hub.value.unsubscribe(userID: handoff.userID, topics: topics)
            message = "Unsubscribed from topics"
        }
        state = .awaitingLog
        hub.value.whenChangesLogged { [self] committed in
            guard state == .awaitingLog else { return }  // the deadline answered first
            guard committed else { return fail(.topicsNotLogged, context: context) }
            state = .done
            responses.json(TopicsResponse(msg: message, topics: topics), origin: origin, context: context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if state == .awaitingRequest, error is HTTPParserError {
            return fail(APIError(status: 400, "Malformed request"), context: context)
        }
        context.close(promise: nil)
    }
}
