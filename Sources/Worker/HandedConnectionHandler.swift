import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Shared

/// Serves the one request of a connection the supervisor handed over: a stream, which then lives on, or a
/// subscribe/unsubscribe, after which the connection closes (a later request may be another user's).
final class HandedConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let handoff: Handoff
    private let hub: NIOLoopBound<StreamHub>
    private let responses: HTTPResponses
    private let logger: Logger
    private var head: HTTPRequestHead?
    private var expiry: Scheduled<Void>?
    private var body = BodyCollector()
    private var state = State.awaitingRequest

    private enum State {
        case awaitingRequest, streaming, done
    }

    init(handoff: Handoff, hub: NIOLoopBound<StreamHub>, responses: HTTPResponses, logger: Logger) {
        self.handoff = handoff
        self.hub = hub
        self.responses = responses
        self.logger = logger
    }

    private var origin: String? { head?.headers.first(name: "origin") }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard state == .awaitingRequest else { return }  // a stream's client has nothing more to say
        switch Self.unwrapInboundIn(data) {
        case .head(let requestHead):
            head = requestHead
            guard case .route(let route) = APIRoute.resolve(method: requestHead.method, target: requestHead.uri),
                route.handoffRoute == handoff.route
            else {
                // The supervisor's reading of the head and SwiftNIO's disagree: serve nothing on a guess.
                return fail(APIError(status: 400, "Malformed request head"), context: context)
            }
            if route == .stream { startStream(requestHead, context: context) }
            if let length = requestHead.headers.first(name: "content-length").flatMap(Int.init), length > body.limit {
                fail(.bodyTooLarge, context: context)
            }
        case .body(let chunk):
            body.append(chunk)
            if body.overflowed { fail(.bodyTooLarge, context: context) }
        case .end:
            if handoff.route != .stream { changeTopics(context: context) }
        }
    }

    private func fail(_ error: APIError, context: ChannelHandlerContext) {
        state = .done
        responses.error(error, origin: origin, context: context)
    }

    private func startStream(_ requestHead: HTTPRequestHead, context: ChannelHandlerContext) {
        state = .streaming
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "text/event-stream")
        headers.add(name: "Cache-Control", value: "no-cache")
        headers.add(name: "Connection", value: "keep-alive")
        headers.add(name: "X-Accel-Buffering", value: "no")
        headers.add(contentsOf: responses.cors.responseHeaders(origin: origin))
        context.write(Self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
        // Browsers resend the last id they saw as a header; polyfills (and first connections) use the query.
        let lastEventID =
            requestHead.headers.first(name: "last-event-id") ?? TokenLocation.queryValue("lastEventId", in: requestHead.uri)
        hub.value.attach(userID: handoff.userID, channel: context.channel, lastEventID: lastEventID)
        if let expiresAt = handoff.tokenExpiry {
            let userID = handoff.userID
            let channel = context.channel
            let hub = self.hub
            let delay = TimeAmount.milliseconds(max(0, expiresAt * 1000 - StreamHub.nowMilliseconds()))
            expiry = context.eventLoop.scheduleTask(in: delay) { hub.value.expire(userID: userID, channel: channel) }
        }
    }

    /// More than `--max-pending-bytes` waiting to be sent (the channel's high water mark): the client stopped
    /// reading. Drop it rather than grow this worker's memory; it reconnects and resumes from its last id.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if state == .streaming, !context.channel.isWritable {
            logger.warning("slow consumer disconnected: too many bytes pending", metadata: ["user": "\(handoff.userID)"])
            context.close(promise: nil)
        }
        context.fireChannelWritabilityChanged()
    }

    private func changeTopics(context: ChannelHandlerContext) {
        guard let request = try? JSONDecoder().decode(JSONValue.self, from: Data(body.body.readableBytesView)) else {
            return fail(.malformedJSON, context: context)
        }
        guard case .object(let fields) = request, case .array(let values)? = fields["topics"], values.count <= 100 else {
            return fail(.invalidTopics, context: context)
        }
        var topics: [String] = []
        for value in values {
            guard case .string(let topic) = value, HubName.isValidTopic(topic) else { return fail(.invalidTopics, context: context) }
            topics.append(topic)
        }
        let message: String
        if handoff.route == .subscribe {
            hub.value.subscribe(userID: handoff.userID, topics: topics)
            message = "Subscribed to topics"
        } else {
            hub.value.unsubscribe(userID: handoff.userID, topics: topics)
            message = "Unsubscribed from topics"
        }
        state = .done
        responses.json(TopicsResponse(msg: message, topics: topics), origin: origin, context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        expiry?.cancel()
        if state == .streaming { hub.value.detach(userID: handoff.userID, channel: context.channel) }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
