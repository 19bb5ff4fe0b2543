import NIOCore
import Shared

/// A stream's whole pipeline: it ignores anything the client sends, drops a client that stops reading, and
/// tells the hub when the connection closes.
///
/// A stream's request never reaches the worker: the supervisor read it and sent what matters with the
/// descriptor (user, token expiry, `Last-Event-ID`, `Origin`), so a stream costs no HTTP parser, only its
/// channel, and frames arrive already chunk-encoded and shared by every stream (see `StreamHub`).
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

    /// Answers a new stream's request (already read by the supervisor) and makes it the user's live stream.
    func start(channel: any Channel, descriptor: CInt, handoff: Handoff, cors: CORSPolicy) {
        attached = true
        hub.value.attach(
            userID: userID, channel: channel, descriptor: descriptor, lastEventID: handoff.lastEventID,
            tokenExpiry: handoff.tokenExpiry, responseHead: StreamPreamble.responseHead(cors: cors, origin: handoff.origin))
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
            hub.value.logger.warning(
                "slow consumer disconnected: too many bytes pending",
                metadata: ["user": "\(userID)", "event": "slow-consumer-disconnected"])
            hub.value.slowConsumerDropped()
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
