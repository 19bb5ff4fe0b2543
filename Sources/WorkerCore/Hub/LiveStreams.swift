import Shared

/// Each user's live streams on this worker (one, unless `--max-streams-per-user` allows several tabs), and when each
/// must end: its token's expiry, kept on an `ExpiryWheel` (one timer for every stream) and cancelled when the stream
/// closes or is replaced, so a churn of short streams with long tokens leaves nothing behind.
struct LiveStreams {
    /// A live stream: its socket, and when its token expires. Everything an idle stream costs the hub is this one
    /// entry and its socket.
    struct Stream {
        var socket: StreamSocket
        /// The order streams went live in on this worker: a frame held for "everyone" goes to the streams live when
        /// it was published (`StreamDelivery`). Also the stream's name within its user's.
        var ordinal: UInt64 = 0
        /// When it went live here, in milliseconds since 1970 (presence: online since).
        var openedAt: Int64 = 0
        /// Seconds since 1970; nil without a token expiry, or once the stream was told it expired.
        var expiresAt: Int64?

        init(socket: StreamSocket, ordinal: UInt64 = 0, openedAt: Int64 = 0) {
            self.socket = socket
            self.ordinal = ordinal
            self.openedAt = openedAt
        }
    }

    /// A user's streams, oldest first. The one stream every user has under the default is stored inline: an array
    /// (another allocation per idle stream) only for a user with several.
    enum UserStreams {
        case one(Stream)
        case several([Stream])

        var count: Int {
            switch self {
            case .one: 1
            case .several(let streams): streams.count
            }
        }

        var oldestFirst: [Stream] {
            switch self {
            case .one(let stream): [stream]
            case .several(let streams): streams
            }
        }

        init?(_ streams: [Stream]) {
            switch streams.count {
            case 0: return nil
            case 1: self = .one(streams[0])
            default: self = .several(streams)
            }
        }
    }

    /// A stream's key on the expiry wheel.
    struct Key: Hashable, Sendable {
        var userID: String
        var ordinal: UInt64
    }

    private(set) var byUser: [String: UserStreams] = [:]
    /// Streams, over every user.
    private(set) var count = 0
    /// The ordinal the next stream to go live gets.
    private(set) var nextOrdinal: UInt64 = 1
    /// `--max-streams-per-user`: the oldest of a user's streams is replaced when one more opens.
    let maximumPerUser: Int
    private var expiries: ExpiryWheel<Key>

    /// `now`: seconds since 1970.
    init(now: Int64, maximumPerUser: Int = 1) {
        precondition(maximumPerUser >= 1, "a user must be allowed a stream")
        expiries = ExpiryWheel(now: now)
        self.maximumPerUser = maximumPerUser
    }

    /// Whether the user has a live stream.
    func isLive(_ userID: String) -> Bool { byUser[userID] != nil }

    /// The user's live streams.
    func count(of userID: String) -> Int { byUser[userID]?.count ?? 0 }

    /// When the user's oldest live stream went live (milliseconds since 1970), if they have one.
    func onlineSince(_ userID: String) -> Int64? {
        switch byUser[userID] {
        case .one(let stream): stream.openedAt
        case .several(let list): list.first?.openedAt
        case nil: nil
        }
    }

    /// Every stream, each user's oldest first.
    func forEachStream(_ body: (_ userID: String, Stream) -> Void) {
        for (userID, streams) in byUser {
            switch streams {
            case .one(let stream): body(userID, stream)
            case .several(let list): for stream in list { body(userID, stream) }
            }
        }
    }

    /// The user's streams, oldest first.
    func forEachStream(of userID: String, _ body: (Stream) -> Void) {
        switch byUser[userID] {
        case .one(let stream): body(stream)
        case .several(let list): for stream in list { body(stream) }
        case nil: break
        }
    }

    /// Makes `socket` one of the user's live streams (that went live at `openedAt`, now when nil); returns it and the
    /// streams it replaces (the oldest, past `maximumPerUser`; their expiries forgotten), for the caller to end.
    mutating func makeLive(
        _ userID: String, socket: StreamSocket, openedAt: Int64? = nil
    ) -> (stream: Stream, replaced: [Stream]) {
        let stream = Stream(socket: socket, ordinal: nextOrdinal, openedAt: openedAt ?? WallClock.milliseconds())
        nextOrdinal += 1
        count += 1
        // Every connection of a user without a stream comes here: no array for it.
        guard let existing = byUser[userID] else {
            byUser[userID] = .one(stream)
            return (stream, [])
        }
        var streams = existing.oldestFirst
        streams.append(stream)
        let replaced = Array(streams.prefix(max(0, streams.count - maximumPerUser)))
        streams.removeFirst(replaced.count)
        byUser[userID] = UserStreams(streams)
        count -= replaced.count
        for old in replaced { cancelExpiry(of: old, userID: userID) }
        return (stream, replaced)
    }

    /// Removes the user's stream `socket` if it is still one of theirs (not replaced since); returns it if it was,
    /// and whether the user has no stream left.
    mutating func remove(_ userID: String, socket: StreamSocket) -> (removed: Stream?, userLeft: Bool) {
        guard var streams = byUser[userID]?.oldestFirst, let index = streams.firstIndex(where: { $0.socket === socket }) else {
            return (nil, false)
        }
        let stream = streams.remove(at: index)
        byUser[userID] = UserStreams(streams)
        count -= 1
        cancelExpiry(of: stream, userID: userID)
        return (stream, streams.isEmpty)
    }

    private mutating func cancelExpiry(of stream: Stream, userID: String) {
        if let expiresAt = stream.expiresAt { expiries.cancel(Key(userID: userID, ordinal: stream.ordinal), at: expiresAt) }
    }

    /// Changes the user's stream `ordinal`, if it is still live.
    private mutating func update(_ userID: String, ordinal: UInt64, _ change: (inout Stream) -> Void) -> Stream? {
        switch byUser[userID] {
        case .one(var stream) where stream.ordinal == ordinal:
            change(&stream)
            byUser[userID] = .one(stream)
            return stream
        case .several(var list):
            guard let index = list.firstIndex(where: { $0.ordinal == ordinal }) else { return nil }
            change(&list[index])
            byUser[userID] = .several(list)
            return list[index]
        default:
            return nil
        }
    }

    enum Expiry: Equatable {
        /// The stream ends when `takeExpired` reaches the second.
        case scheduled
        /// The second is past: the caller ends the stream now (`expireNow`).
        case due
        /// The stream is no longer live: nothing to do.
        case notCurrent
    }

    /// Schedules the end of the user's stream `ordinal` at `second` (seconds since 1970).
    mutating func expire(_ userID: String, ordinal: UInt64, at second: Int64) -> Expiry {
        var live = false
        forEachStream(of: userID) { if $0.ordinal == ordinal { live = true } }
        guard live else { return .notCurrent }
        guard expiries.schedule(Key(userID: userID, ordinal: ordinal), at: second) else { return .due }
        _ = update(userID, ordinal: ordinal) { $0.expiresAt = second }
        return .scheduled
    }

    /// The socket of the user's stream `ordinal`, marked as told of its expiry (so it is told once).
    mutating func expireNow(_ userID: String, ordinal: UInt64) -> StreamSocket? {
        update(userID, ordinal: ordinal) { $0.expiresAt = nil }?.socket
    }

    /// The streams whose token expired by `now` (seconds since 1970), each marked as told.
    mutating func takeExpired(now: Int64) -> [(userID: String, socket: StreamSocket)] {
        var expired: [(userID: String, socket: StreamSocket)] = []
        for (key, second) in expiries.takeDue(now: now) {
            var current = false
            forEachStream(of: key.userID) { if $0.ordinal == key.ordinal, $0.expiresAt == second { current = true } }
            if current, let socket = expireNow(key.userID, ordinal: key.ordinal) { expired.append((key.userID, socket)) }
        }
        return expired
    }
}
