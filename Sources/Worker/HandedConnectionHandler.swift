import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Shared

/// Serves the one request of a connection the supervisor handed over: a stream, which then lives on, or a
/// subscribe/unsubscribe, after which the connection closes (a later request may be another user's).
///
/// A stream's connection sheds its HTTP machinery once the response head is written: the decoder, the
/// encoder and this handler leave the pipeline, and a `LiveStreamHandler` stays, while frames arrive
/// already chunk-encoded and shared by every stream (see `StreamHub`). An idle stream then costs little
/// more than its channel.
final class HandedConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let handoff: Handoff
    /// The connection's descriptor, kept so a reload can pass the live stream on to a new worker.
    private let descriptor: CInt
    private let hub: NIOLoopBound<StreamHub>
    private let responses: HTTPResponses
    private let logger: Logger
    private var head: HTTPRequestHead?
    private var body = BodyCollector()
    private var state = State.awaitingRequest

    private enum State {
        case awaitingRequest, done
    }

    init(handoff: Handoff, descriptor: CInt, hub: NIOLoopBound<StreamHub>, responses: HTTPResponses, logger: Logger) {
        self.handoff = handoff
        self.descriptor = descriptor
        self.hub = hub
        self.responses = responses
        self.logger = logger
    }

    /// The handlers of a handed-over connection, in pipeline order.
    static func handlers(
        handoff: Handoff, descriptor: CInt, hub: NIOLoopBound<StreamHub>, responses: HTTPResponses, logger: Logger
    ) -> [any ChannelHandler] {
        [
            ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes)),
            HTTPResponseEncoder(),
            HandedConnectionHandler(handoff: handoff, descriptor: descriptor, hub: hub, responses: responses, logger: logger),
        ]
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
            if let length = requestHead.headers.first(name: "content-length").flatMap(Int.init), length > body.limit {
                fail(.bodyTooLarge, context: context)
            }
        case .body(let chunk):
            body.append(chunk)
            if body.overflowed { fail(.bodyTooLarge, context: context) }
        case .end:
            guard let head else { return }
            if handoff.route == .stream {
                startStream(head, context: context)
            } else {
                changeTopics(context: context)
            }
        }
    }

    private func fail(_ error: APIError, context: ChannelHandlerContext) {
        state = .done
        responses.error(error, origin: origin, context: context)
    }

    private func startStream(_ requestHead: HTTPRequestHead, context: ChannelHandlerContext) {
        state = .done
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "text/event-stream")
        headers.add(name: "Cache-Control", value: "no-cache")
        headers.add(name: "Connection", value: "keep-alive")
        headers.add(name: "X-Accel-Buffering", value: "no")
        headers.add(name: "Transfer-Encoding", value: "chunked")
        headers.add(contentsOf: responses.cors.responseHeaders(origin: origin))
        context.write(Self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
        // Browsers resend the last id they saw as a header; polyfills (and first connections) use the query.
        let lastEventID =
            requestHead.headers.first(name: "last-event-id") ?? TokenLocation.queryValue("lastEventId", in: requestHead.uri)

        let pipeline = context.pipeline.syncOperations
        let live = LiveStreamHandler(userID: handoff.userID, hub: hub)
        do {
            try pipeline.addHandler(live, position: .last)
            _ = pipeline.removeHandler(context: try pipeline.context(handlerType: HTTPResponseEncoder.self))
            _ = pipeline.removeHandler(context: try pipeline.context(handlerType: ByteToMessageHandler<HTTPRequestDecoder>.self))
            _ = pipeline.removeHandler(context: context)
        } catch {
            logger.error("cannot set up a stream's pipeline", metadata: ["error": "\(error)"])
            context.close(promise: nil)
            return
        }
        live.start(channel: context.channel, descriptor: descriptor, lastEventID: lastEventID, tokenExpiry: handoff.tokenExpiry)
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

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if state == .awaitingRequest, error is HTTPParserError {
            return fail(APIError(status: 400, "Malformed request"), context: context)
        }
        context.close(promise: nil)
    }
}

/// What stays in a stream's pipeline: it ignores anything the client sends, drops a client that stops
/// reading, ends the stream when its token expires, and tells the hub when the connection closes.
final class LiveStreamHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    // Kept small: one of these lives as long as each stream (the hub's logger serves them all).
    private let userID: String
    private let hub: NIOLoopBound<StreamHub>
    private var attached = false

    init(userID: String, hub: NIOLoopBound<StreamHub>) {
        self.userID = userID
        self.hub = hub
    }

    func start(channel: any Channel, descriptor: CInt, lastEventID: String?, tokenExpiry: Int64?) {
        attached = true
        hub.value.attach(
            userID: userID, channel: channel, descriptor: descriptor, lastEventID: lastEventID, tokenExpiry: tokenExpiry)
    }

    /// Continues a stream migrated from a retiring worker.
    func resume(channel: any Channel, descriptor: CInt, handoff: Handoff) {
        attached = true
        hub.value.attachMigrated(channel: channel, descriptor: descriptor, handoff: handoff)
    }

    /// A stream's client has nothing more to say; whatever it sends is dropped unread.
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}

    /// More than `--max-pending-bytes` waiting to be sent (the channel's high water mark): the client stopped
    /// reading. Drop it rather than grow this worker's memory; it reconnects and resumes from its last id.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if !context.channel.isWritable {
            hub.value.logger.warning("slow consumer disconnected: too many bytes pending", metadata: ["user": "\(userID)"])
            context.close(promise: nil)
        }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if attached { hub.value.detach(userID: userID, channel: context.channel) }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
