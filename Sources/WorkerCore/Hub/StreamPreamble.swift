import NIOCore
import Shared

/// What a stream is sent before it goes live, as bytes.
///
/// A new stream gets the response head, then in one chunk `retry:`, `connected`, and what the user missed since
/// their Last-Event-ID (or `reset` when that cannot be known). A stream migrated from a retiring worker gets only
/// the events after the last one its old worker wrote: its client already had the rest.
struct StreamPreamble: Sendable {
    let frames: EventFrames
    /// Sent as `retry:` (milliseconds).
    let retryMilliseconds: Int

    /// A new stream's first bytes, and whether they begin with `reset`.
    struct Opening {
        var bytes: ByteBuffer
        var isReset: Bool
    }

    /// The head of a stream's response: an endless chunked body of `text/event-stream`.
    static func responseHead(cors: CORSPolicy, origin: String?) -> ByteBuffer {
        var head = ByteBuffer()
        ResponseHead(
            status: .ok,
            fields: [
                ("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"), ("Connection", "keep-alive"),
                ("X-Accel-Buffering", "no"), ("Transfer-Encoding", "chunked"),
            ] + cors.responseHeaders(origin: origin)
        ).write(into: &head)
        return head
    }

    /// `head`, then the greeting chunk of `userID`'s new stream resuming after `lastEventID` (nil: none given).
    func opening(
        head: ByteBuffer, userID: String, lastEventID: String?, history: EventHistory, isRecipient: (PublishTarget) -> Bool
    ) -> Opening {
        var greeting = ByteBuffer()
        SSEWireFormat.retry(retryMilliseconds, into: &greeting)
        SSEWireFormat.event("connected", data: ConnectedEventData(userId: userID).json, into: &greeting)
        var isReset = false
        switch history.resumption(after: lastEventID, epoch: frames.epoch, isRecipient: isRecipient) {
        case .live:
            break
        case .reset:
            isReset = true
            SSEWireFormat.event("reset", data: HubJSON.encode(ResetEventData(lastEventId: lastEventID ?? "")), into: &greeting)
        case .replay(let missed):
            for command in missed { frames.write(command, into: &greeting) }
        }
        var bytes = head
        SSEWireFormat.writeChunk(greeting, into: &bytes)
        return Opening(bytes: bytes, isReset: isReset)
    }

    /// The chunk of events after `sequence` that a migrated stream's user receives; nil when there are none.
    func continuation(after sequence: UInt64, history: EventHistory, isRecipient: (PublishTarget) -> Bool) -> ByteBuffer? {
        var missed = ByteBuffer()
        for command in history.entries(after: sequence) where isRecipient(command.target) {
            frames.write(command, into: &missed)
        }
        return missed.readableBytes > 0 ? SSEWireFormat.chunk(missed) : nil
    }
}
