import Foundation
import NIOCore

/// The control protocol's framing: `length: u32 BE` (bytes after it) · `version: u8` · `kind: u8` · payload.
///
/// Strings are `u32 BE` length + UTF-8; integers are big-endian. A frame of an unknown version or kind,
/// or one that does not parse, is a protocol error and the channel is closed.
///
/// Versions: each side writes the version its peer spoke first (`ControlFrameHandler`), and reads every version
/// from `oldestVersion` to `version`. So a supervisor that upgraded in place keeps talking to the workers the
/// previous release started, in their version, until a reload replaces them. A release that changes a frame's
/// layout must keep reading and writing the older layout for every version it still accepts.
public enum ControlFrame {
    /// The version this build speaks first. The tests' switch `SSE_HUB_TEST_PROTOCOL_BUMP` makes it one higher (an
    /// in-place upgrade test runs a "newer" build without building one; the layout is the same).
    public static let version: UInt8 = ProcessInfo.processInfo.environment["SSE_HUB_TEST_PROTOCOL_BUMP"] == nil ? 7 : 8
    /// The oldest version this build still reads and writes: the first release that upgrades in place.
    public static let oldestVersion: UInt8 = 4
    public static var supportedVersions: ClosedRange<UInt8> { oldestVersion...version }
    /// The first version with presence (`presenceQuery`, `presenceAnswer`, `presenceChanged`): a supervisor asks only
    /// workers that speak it, and only a supervisor that speaks it starts workers with `--presence-events`.
    public static let presenceVersion: UInt8 = 5
    /// The first version whose `streamOpened`, `streamClosed` and `endStream` name one stream (`UserStream.openedAt`)
    /// and whose workers report every stream's close, not only a user's last; and the first with `counters`.
    public static let streamNameVersion: UInt8 = 6
    /// The first version whose workers read several connections in one hand-off message (`HandoffBatch`); its frames
    /// are version 6's. A worker of an earlier release closes a message with more than one descriptor, losing them.
    public static let batchedHandoffVersion: UInt8 = 7
    /// Large enough for any frame either side writes: a publish is at most 64 KiB of JSON, and lists (a
    /// stats report's topics, a user's topics) go out in frames of at most `maximumListCount` entries.
    public static let maximumLength = 4 * 1024 * 1024
    /// The most entries one frame lists: 4096 topics of at most 128 bytes, with their counts, fit in 600 KiB.
    public static let maximumListCount = 4096

    enum Kind: UInt8 {
        case hello = 1, stats = 2, pong = 3, subscribed = 4, migrationDone = 5, unsubscribed = 6, forgotten = 7
        case streamOpened = 8, streamClosed = 9, awaitChangesLogged = 10, presenceAnswer = 11, presenceChanged = 12, counters = 13
        case publish = 16, ping = 17, shutdown = 18, historyEntry = 19, historyEnd = 20, migrate = 21, restoreTopics = 22
        case dropTopics = 23, endStream = 24, changesLogged = 25, presenceQuery = 26

        /// The first version that has this kind.
        var since: UInt8 {
            switch self {
            case .presenceAnswer, .presenceChanged, .presenceQuery: ControlFrame.presenceVersion
            case .counters: ControlFrame.streamNameVersion
            default: ControlFrame.oldestVersion
            }
        }
    }
    enum TargetKind: UInt8 {
        case everyone = 0, topic = 1, user = 2
    }

    /// Appends `message` as one frame of `version` to `buffer`.
    public static func encode(_ message: ControlMessage, into buffer: inout ByteBuffer, version: UInt8 = version) {
        precondition(supportedVersions.contains(version), "control frames of version \(version) are not written by this build")
        let lengthIndex = buffer.writerIndex
        buffer.writeInteger(UInt32(0))
        buffer.writeInteger(version)
        switch message {
        case .hello(let hello):
            buffer.writeInteger(Kind.hello.rawValue)
            buffer.writeInteger(UInt32(hello.shard))
            buffer.writeInteger(hello.pid)
        case .stats(let stats):
            buffer.writeInteger(Kind.stats.rawValue)
            buffer.writeInteger(UInt32(stats.clients))
            buffer.writeInteger(UInt32(stats.topicCounts.count))
            for (topic, count) in stats.topicCounts {
                writeString(topic, into: &buffer)
                buffer.writeInteger(UInt32(count))
            }
        case .pong(let nonce):
            buffer.writeInteger(Kind.pong.rawValue)
            buffer.writeInteger(nonce)
        case .subscribed(let change):
            writeUserTopics(change, kind: .subscribed, into: &buffer)
        case .unsubscribed(let change):
            writeUserTopics(change, kind: .unsubscribed, into: &buffer)
        case .restoreTopics(let change):
            writeUserTopics(change, kind: .restoreTopics, into: &buffer)
        case .dropTopics(let change):
            writeUserTopics(change, kind: .dropTopics, into: &buffer)
        case .forgotten(let userID):
            writeUser(userID, kind: .forgotten, into: &buffer)
        case .streamOpened(let stream):
            writeStream(stream, kind: .streamOpened, version: version, into: &buffer)
        case .streamClosed(let stream):
            writeStream(stream, kind: .streamClosed, version: version, into: &buffer)
        case .endStream(let stream):
            writeStream(stream, kind: .endStream, version: version, into: &buffer)
        case .awaitChangesLogged(let token):
            buffer.writeInteger(Kind.awaitChangesLogged.rawValue)
            buffer.writeInteger(token)
        case .changesLogged(let token, let committed):
            buffer.writeInteger(Kind.changesLogged.rawValue)
            buffer.writeInteger(token)
            buffer.writeInteger(UInt8(committed ? 1 : 0))
        case .migrationDone:
            buffer.writeInteger(Kind.migrationDone.rawValue)
        case .migrate:
            buffer.writeInteger(Kind.migrate.rawValue)
        case .publish(let command):
            buffer.writeInteger(Kind.publish.rawValue)
            writeCommand(command, into: &buffer)
        case .historyEntry(let command):
            buffer.writeInteger(Kind.historyEntry.rawValue)
            writeCommand(command, into: &buffer)
        case .historyEnd(let bounds):
            buffer.writeInteger(Kind.historyEnd.rawValue)
            buffer.writeInteger(bounds.evictedThrough)
            buffer.writeInteger(bounds.latestSequence)
        case .ping(let nonce):
            buffer.writeInteger(Kind.ping.rawValue)
            buffer.writeInteger(nonce)
        case .shutdown:
            buffer.writeInteger(Kind.shutdown.rawValue)
        case .presenceQuery(let query):
            precondition(version >= presenceVersion, "a presence query to a peer of version \(version)")
            buffer.writeInteger(Kind.presenceQuery.rawValue)
            buffer.writeInteger(query.id)
            switch query.subject {
            case .topic(let topic):
                buffer.writeInteger(TargetKind.topic.rawValue)
                writeString(topic, into: &buffer)
            case .user(let userID):
                buffer.writeInteger(TargetKind.user.rawValue)
                writeString(userID, into: &buffer)
            }
            writeString(query.after ?? "", into: &buffer)
            buffer.writeInteger(UInt32(clamping: query.limit))
        case .presenceAnswer(let answer):
            precondition(version >= presenceVersion, "a presence answer to a peer of version \(version)")
            buffer.writeInteger(Kind.presenceAnswer.rawValue)
            buffer.writeInteger(answer.id)
            buffer.writeInteger(answer.streams)
            buffer.writeInteger(answer.since)
            buffer.writeInteger(UInt8(answer.more ? 1 : 0))
            buffer.writeInteger(UInt32(answer.names.count))
            for (index, name) in answer.names.enumerated() {
                writeString(name, into: &buffer)
                buffer.writeInteger(index < answer.counts.count ? answer.counts[index] : 0)
            }
        case .presenceChanged(let userID, let online):
            precondition(version >= presenceVersion, "a presence change to a peer of version \(version)")
            buffer.writeInteger(Kind.presenceChanged.rawValue)
            writeString(userID, into: &buffer)
            buffer.writeInteger(UInt8(online ? 1 : 0))
        case .counters(let counters):
            precondition(version >= Kind.counters.since, "counters to a peer of version \(version)")
            buffer.writeInteger(Kind.counters.rawValue)
            for value in [counters.eventsDelivered, counters.bytesWritten, counters.slowConsumersDropped, counters.resumes, counters.resets] {
                buffer.writeInteger(value)
            }
        }
        buffer.setInteger(UInt32(buffer.writerIndex - lengthIndex - 4), at: lengthIndex)
    }

    private static func writeUser(_ userID: String, kind: Kind, into buffer: inout ByteBuffer) {
        buffer.writeInteger(kind.rawValue)
        writeString(userID, into: &buffer)
    }

    /// Before `streamNameVersion` a stream was named by its user alone (every stream of the user).
    private static func writeStream(_ stream: UserStream, kind: Kind, version: UInt8, into buffer: inout ByteBuffer) {
        writeUser(stream.userID, kind: kind, into: &buffer)
        if version >= streamNameVersion { buffer.writeInteger(stream.openedAt) }
    }

    private static func writeUserTopics(_ change: UserTopics, kind: Kind, into buffer: inout ByteBuffer) {
        buffer.writeInteger(kind.rawValue)
        writeString(change.userID, into: &buffer)
        buffer.writeInteger(UInt32(change.topics.count))
        for topic in change.topics { writeString(topic, into: &buffer) }
    }

    private static func writeCommand(_ command: PublishCommand, into buffer: inout ByteBuffer) {
        buffer.writeInteger(command.sequence)
        buffer.writeInteger(command.publishedAt)
        switch command.target {
        case .everyone:
            buffer.writeInteger(TargetKind.everyone.rawValue)
        case .topic(let topic):
            buffer.writeInteger(TargetKind.topic.rawValue)
            writeString(topic, into: &buffer)
        case .user(let user):
            buffer.writeInteger(TargetKind.user.rawValue)
            writeString(user, into: &buffer)
        }
        writeString(command.event, into: &buffer)
        writeString(command.data, into: &buffer)
    }

    /// Takes one whole frame off the front of `buffer`; nil (and `buffer` untouched) until one has fully arrived.
    public static func decode(from buffer: inout ByteBuffer) throws(ControlProtocolError) -> ControlMessage? {
        try decodeWithVersion(from: &buffer)?.message
    }

    /// `decode`, with the version the frame was written in.
    public static func decodeWithVersion(
        from buffer: inout ByteBuffer
    ) throws(ControlProtocolError) -> (message: ControlMessage, version: UInt8)? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
        guard length >= 2, length <= maximumLength else {
            throw ControlProtocolError(.badLength, "frame length \(length)")
        }
        guard buffer.readableBytes >= 4 + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: 4)
        var frame = buffer.readSlice(length: Int(length))!
        let frameVersion: UInt8 = frame.readInteger()!
        guard supportedVersions.contains(frameVersion) else {
            throw ControlProtocolError(.unsupportedVersion, "version \(frameVersion), expected \(oldestVersion) to \(version)")
        }
        let rawKind: UInt8 = frame.readInteger()!
        guard let kind = Kind(rawValue: rawKind), frameVersion >= kind.since else {
            throw ControlProtocolError(.unknownKind, "kind \(rawKind) in a frame of version \(frameVersion)")
        }
        let message = try decodeBody(kind, version: frameVersion, from: &frame)
        guard frame.readableBytes == 0 else {
            throw ControlProtocolError(.malformed, "\(frame.readableBytes) bytes left over in a \(kind) frame")
        }
        return (message, frameVersion)
    }

    private static func decodeBody(
        _ kind: Kind, version: UInt8, from frame: inout ByteBuffer
    ) throws(ControlProtocolError) -> ControlMessage {
        func readStream() throws(ControlProtocolError) -> UserStream {
            let userID = try readString(&frame)
            guard version >= streamNameVersion else { return .every(of: userID) }
            return UserStream(userID: userID, openedAt: try read(Int64.self, &frame))
        }
        switch kind {
        case .hello:
            return .hello(WorkerHello(shard: Int(try read(UInt32.self, &frame)), pid: try read(Int32.self, &frame)))
        case .stats:
            let clients = Int(try read(UInt32.self, &frame))
            let count = Int(try read(UInt32.self, &frame))
            guard count <= frame.readableBytes / 8 else { throw ControlProtocolError(.malformed, "topic count \(count)") }
            var topics: [String: Int] = [:]
            topics.reserveCapacity(count)
            for _ in 0..<count {
                let topic = try readString(&frame)
                topics[topic] = Int(try read(UInt32.self, &frame))
            }
            return .stats(StatsReport(clients: clients, topicCounts: topics))
        case .pong:
            return .pong(try read(UInt64.self, &frame))
        case .subscribed:
            return .subscribed(try readUserTopics(&frame))
        case .unsubscribed:
            return .unsubscribed(try readUserTopics(&frame))
        case .restoreTopics:
            return .restoreTopics(try readUserTopics(&frame))
        case .dropTopics:
            return .dropTopics(try readUserTopics(&frame))
        case .forgotten:
            return .forgotten(try readString(&frame))
        case .streamOpened:
            return .streamOpened(try readStream())
        case .streamClosed:
            return .streamClosed(try readStream())
        case .endStream:
            return .endStream(try readStream())
        case .awaitChangesLogged:
            return .awaitChangesLogged(try read(UInt64.self, &frame))
        case .presenceQuery:
            let id = try read(UInt64.self, &frame)
            let subject: PresenceQuery.Subject
            switch TargetKind(rawValue: try read(UInt8.self, &frame)) {
            case .topic: subject = .topic(try readString(&frame))
            case .user: subject = .user(try readString(&frame))
            default: throw ControlProtocolError(.malformed, "presence subject")
            }
            let after = try readString(&frame)
            return .presenceQuery(
                PresenceQuery(id: id, subject: subject, after: after.isEmpty ? nil : after, limit: Int(try read(UInt32.self, &frame))))
        case .presenceAnswer:
            let id = try read(UInt64.self, &frame)
            let streams = try read(UInt32.self, &frame)
            let since = try read(Int64.self, &frame)
            let more = try read(UInt8.self, &frame)
            guard more <= 1 else { throw ControlProtocolError(.malformed, "presence more flag \(more)") }
            let count = Int(try read(UInt32.self, &frame))
            guard count <= frame.readableBytes / 8 else { throw ControlProtocolError(.malformed, "presence name count \(count)") }
            var names: [String] = []
            var counts: [UInt32] = []
            for _ in 0..<count {
                names.append(try readString(&frame))
                counts.append(try read(UInt32.self, &frame))
            }
            return .presenceAnswer(PresenceAnswer(id: id, names: names, counts: counts, streams: streams, since: since, more: more == 1))
        case .presenceChanged:
            let userID = try readString(&frame)
            switch try read(UInt8.self, &frame) {
            case 0: return .presenceChanged(userID, online: false)
            case 1: return .presenceChanged(userID, online: true)
            case let flag: throw ControlProtocolError(.malformed, "online flag \(flag)")
            }
        case .counters:
            return .counters(
                WorkerCounters(
                    eventsDelivered: try read(UInt64.self, &frame), bytesWritten: try read(UInt64.self, &frame),
                    slowConsumersDropped: try read(UInt64.self, &frame), resumes: try read(UInt64.self, &frame),
                    resets: try read(UInt64.self, &frame)))
        case .changesLogged:
            let token = try read(UInt64.self, &frame)
            switch try read(UInt8.self, &frame) {
            case 0: return .changesLogged(token, committed: false)
            case 1: return .changesLogged(token, committed: true)
            case let flag: throw ControlProtocolError(.malformed, "committed flag \(flag)")
            }
        case .migrationDone:
            return .migrationDone
        case .migrate:
            return .migrate
        case .publish:
            return .publish(try readCommand(&frame))
        case .historyEntry:
            return .historyEntry(try readCommand(&frame))
        case .historyEnd:
            return .historyEnd(HistoryBounds(evictedThrough: try read(UInt64.self, &frame), latestSequence: try read(UInt64.self, &frame)))
        case .ping:
            return .ping(try read(UInt64.self, &frame))
        case .shutdown:
            return .shutdown
        }
    }

    private static func readUserTopics(_ frame: inout ByteBuffer) throws(ControlProtocolError) -> UserTopics {
        let userID = try readString(&frame)
        let count = Int(try read(UInt32.self, &frame))
        guard count <= frame.readableBytes / 4 else { throw ControlProtocolError(.malformed, "topic count \(count)") }
        var topics: [String] = []
        topics.reserveCapacity(count)
        for _ in 0..<count { topics.append(try readString(&frame)) }
        return UserTopics(userID: userID, topics: topics)
    }

    private static func readCommand(_ frame: inout ByteBuffer) throws(ControlProtocolError) -> PublishCommand {
        let sequence = try read(UInt64.self, &frame)
        let publishedAt = try read(Int64.self, &frame)
        let rawTarget = try read(UInt8.self, &frame)
        let target: PublishTarget
        switch TargetKind(rawValue: rawTarget) {
        case .everyone: target = .everyone
        case .topic: target = .topic(try readString(&frame))
        case .user: target = .user(try readString(&frame))
        case nil: throw ControlProtocolError(.malformed, "publish target \(rawTarget)")
        }
        let event = try readString(&frame)
        let data = try readString(&frame)
        return PublishCommand(target: target, event: event, data: data, sequence: sequence, publishedAt: publishedAt)
    }

    private static func writeString(_ string: String, into buffer: inout ByteBuffer) {
        let lengthIndex = buffer.writerIndex
        buffer.writeInteger(UInt32(0))
        let written = buffer.writeString(string)
        buffer.setInteger(UInt32(written), at: lengthIndex)
    }

    private static func read<T: FixedWidthInteger>(_: T.Type, _ frame: inout ByteBuffer) throws(ControlProtocolError) -> T {
        guard let value = frame.readInteger(as: T.self) else { throw ControlProtocolError(.malformed, "frame cut short") }
        return value
    }

    private static func readString(_ frame: inout ByteBuffer) throws(ControlProtocolError) -> String {
        let length = Int(try read(UInt32.self, &frame))
        guard let bytes = frame.readBytes(length: length) else {
            throw ControlProtocolError(.malformed, "string of \(length) bytes cut short")
        }
        // Both ends write only valid UTF-8: anything else is corruption, refused rather than repaired.
        guard let string = String(validating: bytes, as: UTF8.self) else {
            throw ControlProtocolError(.malformed, "string of \(length) bytes is not UTF-8")
        }
        return string
    }
}

/// A control frame that could not be understood; the channel carrying it is closed.
public struct ControlProtocolError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        case badLength = "control.bad-length"
        case unsupportedVersion = "control.unsupported-version"
        case unknownKind = "control.unknown-kind"
        case malformed = "control.malformed"
    }
    public let code: Code
    public let detail: String

    init(_ code: Code, _ detail: String) {
        self.code = code
        self.detail = detail
    }

    public var description: String { "\(code.rawValue): \(detail)" }
}

/// Both directions of a control channel's framing: bytes in, `ControlMessage`s out to the next handler, and
/// `ControlMessage`s written as frames.
///
/// Frames go out in the version the peer spoke (`peerVersion`, from its first frame, or given when a channel is
/// adopted mid-life), else in this build's. What was read and not decoded yet stays in `unread`: a supervisor that
/// upgrades in place stops reading, copies it (`unreadBytes`), and its successor starts with it (`init(unread:)`),
/// so no byte of a frame cut by the hand-over is lost. While `sealed` (the hand-over), writes wait here instead of
/// reaching the socket, so none can be cut in half by `execve`; `unseal` sends them (the hand-over failed).
public final class ControlFrameHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ControlMessage
    public typealias OutboundIn = ControlMessage
    public typealias OutboundOut = ByteBuffer

    public private(set) var peerVersion: UInt8?
    private var unread: ByteBuffer
    private var failed = false
    private var context: ChannelHandlerContext?
    /// Writes made while sealed, in order; nil while not sealed.
    private var sealed: [(message: ControlMessage, promise: EventLoopPromise<Void>?)]?

    /// Frames to send before anything else (a channel taken over with writes its previous owner held back).
    private var unsent: ByteBuffer

    public init(peerVersion: UInt8? = nil, unread: ByteBuffer = ByteBuffer(), unsent: ByteBuffer = ByteBuffer()) {
        self.peerVersion = peerVersion
        self.unread = unread
        self.unsent = unsent
    }

    /// The writes held back while sealed, as frames.
    public func sealedFrames() -> [UInt8] {
        var buffer = ByteBuffer()
        for (message, _) in sealed ?? [] { ControlFrame.encode(message, into: &buffer, version: peerVersion ?? ControlFrame.version) }
        return Array(buffer.readableBytesView)
    }

    /// What was read and not decoded (at most the start of a frame, once every whole one was passed on).
    public var unreadBytes: ByteBuffer { unread }

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    /// From now on writes wait here.
    public func seal() {
        if sealed == nil { sealed = [] }
    }

    /// Sends what waited, and writes go through again.
    public func unseal() {
        guard let waiting = sealed else { return }
        sealed = nil
        guard let context else { return }
        for (message, promise) in waiting {
            context.write(Self.wrapOutboundOut(frame(message, allocator: context.channel.allocator)), promise: promise)
        }
        context.flush()
    }

    public func channelActive(context: ChannelHandlerContext) {
        if unsent.readableBytes > 0 {
            context.writeAndFlush(Self.wrapOutboundOut(unsent), promise: nil)
            unsent = ByteBuffer()
        }
        context.fireChannelActive()
        // Whole frames handed over with the channel are not waiting for a read to be decoded.
        decodeAll(context: context)
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = Self.unwrapInboundIn(data)
        // Most reads end on a frame boundary: then the read's own buffer is decoded, without a copy.
        if unread.readableBytes == 0 { unread = bytes } else { unread.writeBuffer(&bytes) }
        decodeAll(context: context)
    }

    private func decodeAll(context: ChannelHandlerContext) {
        while !failed {
            do {
                guard let (message, version) = try ControlFrame.decodeWithVersion(from: &unread) else { break }
                if peerVersion == nil { peerVersion = version }
                context.fireChannelRead(Self.wrapInboundOut(message))
            } catch {
                failed = true
                context.fireErrorCaught(error)
            }
        }
        if unread.readableBytes == 0 { unread = ByteBuffer() } else { unread.discardReadBytes() }
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let message = Self.unwrapOutboundIn(data)
        if sealed != nil {
            sealed!.append((message, promise))
            return
        }
        context.write(Self.wrapOutboundOut(frame(message, allocator: context.channel.allocator)), promise: promise)
    }

    private func frame(_ message: ControlMessage, allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 64)
        ControlFrame.encode(message, into: &buffer, version: peerVersion ?? ControlFrame.version)
        return buffer
    }
}
