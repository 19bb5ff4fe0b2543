import NIOCore

/// The control protocol's framing: `length: u32 BE` (bytes after it) · `version: u8` · `kind: u8` · payload.
///
/// Strings are `u32 BE` length + UTF-8; integers are big-endian. A frame of an unknown version or kind,
/// or one that does not parse, is a protocol error and the channel is closed: both ends come from one build
/// (a reload checks the installed worker's `WireProtocol.versions` first), so garbage means corruption, not
/// an older peer worth talking to.
public enum ControlFrame {
    public static let version: UInt8 = 4
    /// Large enough for any frame either side writes: a publish is at most 64 KiB of JSON, and lists (a
    /// stats report's topics, a user's topics) go out in frames of at most `maximumListCount` entries.
    public static let maximumLength = 4 * 1024 * 1024
    /// The most entries one frame lists: 4096 topics of at most 128 bytes, with their counts, fit in 600 KiB.
    public static let maximumListCount = 4096

    enum Kind: UInt8 {
        case hello = 1, stats = 2, pong = 3, subscribed = 4, migrationDone = 5, unsubscribed = 6, forgotten = 7
        case streamOpened = 8, streamClosed = 9, awaitChangesLogged = 10
        case publish = 16, ping = 17, shutdown = 18, historyEntry = 19, historyEnd = 20, migrate = 21, restoreTopics = 22
        case dropTopics = 23, endStream = 24, changesLogged = 25
    }
    enum TargetKind: UInt8 {
        case everyone = 0, topic = 1, user = 2
    }

    /// Appends `message` as one frame to `buffer`.
    public static func encode(_ message: ControlMessage, into buffer: inout ByteBuffer) {
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
        case .streamOpened(let userID):
            writeUser(userID, kind: .streamOpened, into: &buffer)
        case .streamClosed(let userID):
            writeUser(userID, kind: .streamClosed, into: &buffer)
        case .endStream(let userID):
            writeUser(userID, kind: .endStream, into: &buffer)
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
        }
        buffer.setInteger(UInt32(buffer.writerIndex - lengthIndex - 4), at: lengthIndex)
    }

    private static func writeUser(_ userID: String, kind: Kind, into buffer: inout ByteBuffer) {
        buffer.writeInteger(kind.rawValue)
        writeString(userID, into: &buffer)
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
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
        guard length >= 2, length <= maximumLength else {
            throw ControlProtocolError(.badLength, "frame length \(length)")
        }
        guard buffer.readableBytes >= 4 + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: 4)
        var frame = buffer.readSlice(length: Int(length))!
        let frameVersion: UInt8 = frame.readInteger()!
        guard frameVersion == version else {
            throw ControlProtocolError(.unsupportedVersion, "version \(frameVersion), expected \(version)")
        }
        let rawKind: UInt8 = frame.readInteger()!
        guard let kind = Kind(rawValue: rawKind) else {
            throw ControlProtocolError(.unknownKind, "kind \(rawKind)")
        }
        let message = try decodeBody(kind, from: &frame)
        guard frame.readableBytes == 0 else {
            throw ControlProtocolError(.malformed, "\(frame.readableBytes) bytes left over in a \(kind) frame")
        }
        return message
    }

    private static func decodeBody(_ kind: Kind, from frame: inout ByteBuffer) throws(ControlProtocolError) -> ControlMessage {
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
            return .streamOpened(try readString(&frame))
        case .streamClosed:
            return .streamClosed(try readString(&frame))
        case .endStream:
            return .endStream(try readString(&frame))
        case .awaitChangesLogged:
            return .awaitChangesLogged(try read(UInt64.self, &frame))
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

/// Splits the control byte stream into `ControlMessage`s.
public struct ControlFrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = ControlMessage
    public init() {}

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let message = try ControlFrame.decode(from: &buffer) else { return .needMoreData }
        context.fireChannelRead(Self.wrapInboundOut(message))
        return .continue
    }
}

/// Writes `ControlMessage`s as frames.
public struct ControlFrameEncoder: MessageToByteEncoder {
    public typealias OutboundIn = ControlMessage
    public init() {}

    public func encode(data: ControlMessage, out: inout ByteBuffer) throws {
        ControlFrame.encode(data, into: &out)
    }
}
