import NIOCore
import Shared

/// Queues each published frame on its recipients' streams and flushes them in batches: when publishes arrive
/// faster than they are delivered, each stream then gets all the events of a control-channel read in one `writev`
/// instead of one syscall per event; when they do not, nothing waits.
struct StreamDelivery {
    /// A stream's `--max-pending-bytes`: queued-but-unflushed events count toward it, so a batch is flushed before
    /// it could make a stream that reads promptly look like a slow consumer.
    let maximumPendingBytes: Int
    /// Streams written to since the last flush (besides every stream, after a broadcast).
    private var unflushed: [ObjectIdentifier: any Channel] = [:]
    private var unflushedEveryone = false
    /// Bytes queued since the last flush: the most any one stream has waiting unflushed.
    private var unflushedBytes = 0

    init(maximumPendingBytes: Int) {
        self.maximumPendingBytes = maximumPendingBytes
    }

    /// Queues `frame` (chunk-encoded, shared by every recipient) on the streams `target` reaches: every stream,
    /// the topic's `subscribers` that have one, or the user's.
    mutating func queue(
        _ frame: ByteBuffer, for target: PublishTarget, streams: [String: LiveStreams.Stream], subscribers: [String: Set<String>]
    ) {
        if unflushedBytes + frame.readableBytes > maximumPendingBytes / 4 { flush(streams: streams) }
        unflushedBytes += frame.readableBytes
        switch target {
        case .everyone:
            for stream in streams.values { stream.channel.write(frame, promise: nil) }
            unflushedEveryone = true
        case .topic(let topic):
            for userID in subscribers[topic] ?? [] {
                if let stream = streams[userID] { queue(frame, on: stream.channel) }
            }
        case .user(let userID):
            if let stream = streams[userID] { queue(frame, on: stream.channel) }
        }
    }

    private mutating func queue(_ frame: ByteBuffer, on channel: any Channel) {
        channel.write(frame, promise: nil)
        unflushed[ObjectIdentifier(channel)] = channel
    }

    /// Sends what `queue` queued.
    mutating func flush(streams: [String: LiveStreams.Stream]) {
        if unflushedEveryone {
            for stream in streams.values { stream.channel.flush() }
        } else {
            for channel in unflushed.values { channel.flush() }
        }
        unflushed.removeAll(keepingCapacity: true)
        unflushedEveryone = false
        unflushedBytes = 0
    }
}
