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
///
/// Every field a client controls is bounded, so an encoded hand-off always fits one `SOCK_SEQPACKET` message:
/// a request that would not fit is refused (431) before it gets here, never trapped on. A user's topics are not
/// carried: the supervisor keeps every user's subscriptions and gives them to a worker over its control channel.
public struct Handoff: Sendable, Hashable {
    public static let version: UInt8 = 3
    /// The layout with `openedAt` (a migrated stream's name), written only by a worker to its successor, which is
    /// always of this release or newer; the supervisor's hand-offs keep `version`, which an older worker reads.
    public static let versionWithOpenedAt: UInt8 = 4
    /// The most bytes of `Last-Event-ID` or `Origin` a hand-off carries (a real one is a few dozen).
    public static let maximumHeaderValueBytes = 4096
    /// The most bytes of a user id (`TokenVerifier` refuses longer ones).
    public static let maximumUserIDBytes = 1024

    public var route: HandoffRoute
    public var userID: String
    /// The token's `exp` (seconds since 1970), if it has one.
    public var tokenExpiry: Int64?
    /// A migrated stream: the last event sequence its old worker had written to it.
    public var resumeAfter: UInt64?
    /// A stream: the id it resumes after (`Last-Event-ID`, or `?lastEventId=`).
    public var lastEventID: String?
    /// A stream: the request's `Origin`, for the CORS headers of the response.
    public var origin: String?
    /// A migrated stream: when it first went live (milliseconds since 1970), its name in the hub and its user's
    /// "online since"; nil from a worker of a release before it.
    public var openedAt: Int64?

    public init(
        route: HandoffRoute, userID: String, tokenExpiry: Int64?, resumeAfter: UInt64? = nil, lastEventID: String? = nil,
        origin: String? = nil, openedAt: Int64? = nil
    ) {
        self.route = route
        self.userID = userID
        self.tokenExpiry = tokenExpiry
        self.resumeAfter = resumeAfter
        self.lastEventID = lastEventID
        self.origin = origin
        self.openedAt = openedAt
    }

    /// Why a hand-off cannot be encoded: a field over its bound.
    public struct TooLarge: Error, Sendable, Equatable, CustomStringConvertible {
        public var field: String
        public var bytes: Int

        public init(field: String, bytes: Int) {
            self.field = field
            self.bytes = bytes
        }

        public var description: String { "hand-off \(field) of \(bytes) bytes is over its bound" }
    }

    /// Marks an absent optional string (a present one is at most `maximumHeaderValueBytes`).
    private static let absent = UInt16.max

    /// `version: u8` · `route: u8` · `expiry: i64 BE` (−1: none) · `resumeAfter: u64 BE` (0: none) ·
    /// [version 4: `openedAt: i64 BE`] · `lastEventID`, `origin`: `u16 length + UTF-8` each (0xFFFF: none) ·
    /// `userID` (UTF-8, the rest).
    public func encoded() throws(TooLarge) -> [UInt8] {
        let userIDBytes = userID.utf8.count
        guard userIDBytes <= Self.maximumUserIDBytes else { throw TooLarge(field: "user id", bytes: userIDBytes) }
        var buffer = ByteBuffer()
        buffer.reserveCapacity(20 + userIDBytes + (lastEventID?.utf8.count ?? 0) + (origin?.utf8.count ?? 0) + 4)
        buffer.writeInteger(openedAt == nil ? Self.version : Self.versionWithOpenedAt)
        buffer.writeInteger(route.rawValue)
        buffer.writeInteger(tokenExpiry ?? -1)
        buffer.writeInteger(resumeAfter ?? 0)
        if let openedAt { buffer.writeInteger(openedAt) }
        for (name, optional) in [("Last-Event-ID", lastEventID), ("Origin", origin)] {
            guard let value = optional else {
                buffer.writeInteger(Self.absent)
                continue
            }
            let length = value.utf8.count
            guard length <= Self.maximumHeaderValueBytes else { throw TooLarge(field: name, bytes: length) }
            buffer.writeInteger(UInt16(length))
            buffer.writeString(value)
        }
        buffer.writeString(userID)
        return Array(buffer.readableBytesView)
    }

    public init(decoding bytes: some Collection<UInt8>) throws(ControlProtocolError) {
        var buffer = ByteBuffer(bytes: bytes)
        guard let version = buffer.readInteger(as: UInt8.self), version == Self.version || version == Self.versionWithOpenedAt else {
            throw ControlProtocolError(.unsupportedVersion, "hand-off of version \(bytes.first.map(String.init) ?? "none")")
        }
        guard let rawRoute = buffer.readInteger(as: UInt8.self), let route = HandoffRoute(rawValue: rawRoute),
            let expiry = buffer.readInteger(as: Int64.self), let resumeAfter = buffer.readInteger(as: UInt64.self)
        else {
            throw ControlProtocolError(.malformed, "hand-off of \(bytes.count) bytes")
        }
        var openedAt: Int64?
        if version == Self.versionWithOpenedAt {
            guard let value = buffer.readInteger(as: Int64.self) else { throw ControlProtocolError(.malformed, "hand-off cut short") }
            openedAt = value
        }
        var optionals: [String?] = []
        for _ in 0..<2 {
            guard let length = buffer.readInteger(as: UInt16.self) else {
                throw ControlProtocolError(.malformed, "hand-off cut short")
            }
            if length == Self.absent {
                optionals.append(nil)
            } else if Int(length) <= Self.maximumHeaderValueBytes, let value = Self.readUTF8(&buffer, length: Int(length)) {
                optionals.append(value)
            } else {
                throw ControlProtocolError(.malformed, "hand-off header value of \(length) bytes")
            }
        }
        guard buffer.readableBytes <= Self.maximumUserIDBytes, let userID = Self.readUTF8(&buffer, length: buffer.readableBytes),
            !userID.isEmpty
        else {
            throw ControlProtocolError(.malformed, "hand-off without a valid user id of at most \(Self.maximumUserIDBytes) bytes")
        }
        self.init(
            route: route, userID: userID, tokenExpiry: expiry < 0 ? nil : expiry, resumeAfter: resumeAfter == 0 ? nil : resumeAfter,
            lastEventID: optionals[0], origin: optionals[1], openedAt: openedAt)
    }

    /// `length` bytes as UTF-8, or nil when they are not valid UTF-8: repairing them (U+FFFD is three bytes) would
    /// make a string that no longer fits the bound it was read within (found by the hand-off fuzzer).
    private static func readUTF8(_ buffer: inout ByteBuffer, length: Int) -> String? {
        guard let bytes = buffer.readBytes(length: length) else { return nil }
        return String(validating: bytes, as: UTF8.self)
    }
}
