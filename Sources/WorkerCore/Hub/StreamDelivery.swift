import NIOCore
import Shared

/// Delivers each published frame to its recipients' streams, a control-channel read's worth at a time.
///
/// The frames a read carries are held, with their recipients resolved at once, until the read ends (`flush`); then
/// each stream gets all of its frames in one pass: written together and flushed (one gathered `sendmsg` when publishes came
/// faster than they are delivered), before the next stream is served. So the first stream's bytes leave as soon as
/// the read is decoded, rather than after the frames were queued on every stream first (with 2,500 streams a worker,
/// that queueing pass delayed every delivery by milliseconds and put the median latency above nchan's).
struct StreamDelivery {
    /// A stream's `--max-pending-bytes`: held bytes count toward it, so a batch is flushed before it could make a
    /// stream that reads promptly look like a slow consumer.
    let maximumPendingBytes: Int
    private var held: [Held] = []
    /// Bytes held since the last flush: the most any one stream has waiting.
    private var heldBytes = 0
    /// Frames and bytes written to streams, for the host's metrics.
    private(set) var framesWritten: UInt64 = 0
    private(set) var bytesWritten: UInt64 = 0

    private struct Held {
        var frame: ByteBuffer
        var recipients: Recipients
    }

    private enum Recipients {
        /// Every stream that was live when the frame was published: the ones with an ordinal below this. A stream that
        /// goes live later in the same read replays the event from the history and must not get it twice.
        case everyone(before: UInt64)
        case some([StreamSocket])
    }

    init(maximumPendingBytes: Int) {
        self.maximumPendingBytes = maximumPendingBytes
    }

    /// Holds `frame` (chunk-encoded, shared by every recipient) for the streams `target` reaches: every stream live
    /// now (those with an ordinal below the next), the streams of the topic's `subscribers`, or the user's.
    mutating func queue(_ frame: ByteBuffer, for target: PublishTarget, streams: LiveStreams, subscribers: [String: Set<String>]) {
        if heldBytes + frame.readableBytes > maximumPendingBytes / 4 { flush(streams: streams) }
        let recipients: Recipients
        switch target {
        case .everyone:
            recipients = .everyone(before: streams.nextOrdinal)
        case .topic(let topic):
            var sockets: [StreamSocket] = []
            for userID in subscribers[topic] ?? [] { streams.forEachStream(of: userID) { sockets.append($0.socket) } }
            recipients = .some(sockets)
        case .user(let userID):
            var sockets: [StreamSocket] = []
            streams.forEachStream(of: userID) { sockets.append($0.socket) }
            recipients = .some(sockets)
        }
        held.append(Held(frame: frame, recipients: recipients))
        heldBytes += frame.readableBytes
    }

    /// Sends what `queue` held, stream by stream.
    mutating func flush(streams: LiveStreams) {
        defer {
            held.removeAll(keepingCapacity: true)
            heldBytes = 0
        }
        switch held.count {
        case 0:
            return
        case 1:
            let only = held[0]
            switch only.recipients {
            case .everyone(let before):
                var written: UInt64 = 0
                streams.forEachStream { _, stream in
                    if stream.ordinal < before {
                        stream.socket.writeAndFlush(only.frame)
                        written += 1
                    }
                }
                wrote(written, of: only.frame)
            case .some(let sockets):
                for socket in sockets { socket.writeAndFlush(only.frame) }
                wrote(UInt64(sockets.count), of: only.frame)
            }
        default:
            flushBatches(streams: streams)
        }
    }

    /// Several frames: each stream gets its own, in publish order, then one flush.
    private mutating func flushBatches(streams: LiveStreams) {
        if held.allSatisfy({ if case .everyone = $0.recipients { true } else { false } }) {
            var (frames, bytes): (UInt64, UInt64) = (0, 0)
            let held = held
            streams.forEachStream { _, stream in
                for entry in held {
                    if case .everyone(let before) = entry.recipients, stream.ordinal < before {
                        stream.socket.write(entry.frame)
                        frames &+= 1
                        bytes &+= UInt64(entry.frame.readableBytes)
                    }
                }
                stream.socket.flush()
            }
            framesWritten &+= frames
            bytesWritten &+= bytes
            return
        }
        var batches: [ObjectIdentifier: (socket: StreamSocket, frames: [ByteBuffer])] = [:]
        for entry in held {
            switch entry.recipients {
            case .everyone(let before):
                streams.forEachStream { _, stream in
                    if stream.ordinal < before { batches[ObjectIdentifier(stream.socket), default: (stream.socket, [])].frames.append(entry.frame) }
                }
            case .some(let sockets):
                for socket in sockets { batches[ObjectIdentifier(socket), default: (socket, [])].frames.append(entry.frame) }
            }
        }
        for batch in batches.values {
            for frame in batch.frames {
                batch.socket.write(frame)
                wrote(1, of: frame)
            }
            batch.socket.flush()
        }
    }

    private mutating func wrote(_ copies: UInt64, of frame: ByteBuffer) {
        framesWritten &+= copies
        bytesWritten &+= copies &* UInt64(frame.readableBytes)
    }
}
