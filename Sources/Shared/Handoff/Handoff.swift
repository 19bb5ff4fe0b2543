import NIOCore

/// Which request a handed-over connection carries.
public enum HandoffRoute: UInt8, Sendable, CaseIterable {
    /// A stream request, already read off the socket by the supervisor: the worker writes the response
    /// straight away, from what the hand-off carries (no HTTP parsing on the worker's side).
    case stream = 1
    /// A topic change: its request is still unread in the socket, for the worker's HTTP parser (it has a body).
    case subscribe = 2
    case unsubscribe = 3
    /// A live stream moving from a retiring worker (reload): its response head is long sent, so the new
    /// worker reads no request and continues the event stream after `resumeAfter`.
    case migrated = 4
}

/// What the supervisor learned about a connection before handing it to a worker, sent with its descriptor.
///
/// The worker trusts `userID`: the supervisor verified the request's token, and the worker serves only
/// that one request on the connection, so a later request for another user can never reach it.
public struct Handoff: Sendable, Hashable {
    public static let version: UInt8 = 2

    public var route: HandoffRoute
    public var userID: String
    /// The token's `exp` (seconds since 1970), if it has one.
    public var tokenExpiry: Int64?
    /// A migrated stream: the last event sequence its old worker had written to it.
    public var resumeAfter: UInt64?
    /// A migrated stream: its user's topics.
    public var topics: [String]
    /// A stream: the id it resumes after (`Last-Event-ID`, or `?lastEventId=`).
    public var lastEventID: String?
    /// A stream: the request's `Origin`, for the CORS headers of the response.
    public var origin: String?

    public init(
        route: HandoffRoute, userID: String, tokenExpiry: Int64?, resumeAfter: UInt64? = nil, topics: [String] = [],
        lastEventID: String? = nil, origin: String? = nil
    ) {
        self.route = route
        self.userID = userID
        self.tokenExpiry = tokenExpiry
        self.resumeAfter = resumeAfter
        self.topics = topics
        self.lastEventID = lastEventID
        self.origin = origin
    }

    /// Marks an absent optional string (a present one is at most a request head long, under 64 KiB).
    private static let absent = UInt16.max

    /// `version: u8` · `route: u8` · `expiry: i64 BE` (−1: none) · `resumeAfter: u64 BE` (0: none) ·
    /// `topics: u16 count, then u16 length + UTF-8 each` · `lastEventID`, `origin`: `u16 length + UTF-8` each
    /// (0xFFFF: none) · `userID` (UTF-8, the rest).
    public func encoded() -> [UInt8] {
        var buffer = ByteBuffer()
        buffer.writeInteger(Self.version)
        buffer.writeInteger(route.rawValue)
        buffer.writeInteger(tokenExpiry ?? -1)
        buffer.writeInteger(resumeAfter ?? 0)
        buffer.writeInteger(UInt16(topics.count))
        for topic in topics {
            buffer.writeInteger(UInt16(topic.utf8.count))
            buffer.writeString(topic)
        }
        for optional in [lastEventID, origin] {
            if let value = optional, value.utf8.count < Self.absent {
                buffer.writeInteger(UInt16(value.utf8.count))
                buffer.writeString(value)
            } else {
                buffer.writeInteger(Self.absent)
            }
        }
        buffer.writeString(userID)
        return Array(buffer.readableBytesView)
    }

    public init(decoding bytes: [UInt8]) throws(ControlProtocolError) {
        var buffer = ByteBuffer(bytes: bytes)
        guard let version = buffer.readInteger(as: UInt8.self), version == Self.version else {
            throw ControlProtocolError(.unsupportedVersion, "hand-off of version \(bytes.first.map(String.init) ?? "none")")
        }
        guard let rawRoute = buffer.readInteger(as: UInt8.self), let route = HandoffRoute(rawValue: rawRoute),
            let expiry = buffer.readInteger(as: Int64.self), let resumeAfter = buffer.readInteger(as: UInt64.self),
            let topicCount = buffer.readInteger(as: UInt16.self)
        else {
            throw ControlProtocolError(.malformed, "hand-off of \(bytes.count) bytes")
        }
        var topics: [String] = []
        for _ in 0..<topicCount {
            guard let length = buffer.readInteger(as: UInt16.self), let topic = buffer.readString(length: Int(length)) else {
                throw ControlProtocolError(.malformed, "hand-off topics cut short")
            }
            topics.append(topic)
        }
        var optionals: [String?] = []
        for _ in 0..<2 {
            guard let length = buffer.readInteger(as: UInt16.self) else {
                throw ControlProtocolError(.malformed, "hand-off cut short")
            }
            if length == Self.absent {
                optionals.append(nil)
            } else if let value = buffer.readString(length: Int(length)) {
                optionals.append(value)
            } else {
                throw ControlProtocolError(.malformed, "hand-off cut short")
            }
        }
        guard let userID = buffer.readString(length: buffer.readableBytes), !userID.isEmpty else {
            throw ControlProtocolError(.malformed, "hand-off without a user")
        }
        self.init(
            route: route, userID: userID, tokenExpiry: expiry < 0 ? nil : expiry, resumeAfter: resumeAfter == 0 ? nil : resumeAfter,
            topics: topics, lastEventID: optionals[0], origin: optionals[1])
    }
}
