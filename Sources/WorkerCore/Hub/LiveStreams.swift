import NIOCore

/// Each user's one live stream on this worker, and when each must end: its token's expiry, kept on an
/// `ExpiryWheel` (one timer for every stream) and cancelled when the stream closes or is replaced, so a churn of
/// short streams with long tokens leaves nothing behind.
struct LiveStreams {
    /// A user's live stream: its channel, its socket descriptor (so a reload can pass the connection on), and when
    /// its token expires. Everything an idle stream costs the hub is this one entry.
    struct Stream {
        var channel: any Channel
        var descriptor: CInt
        /// Seconds since 1970; nil without a token expiry, or once the stream was told it expired.
        var expiresAt: Int64?
        /// The order streams went live in on this worker: a frame held for "everyone" goes to the streams live when
        /// it was published (`StreamDelivery`).
        var ordinal: UInt64 = 0
    }

    private(set) var byUser: [String: Stream] = [:]
    /// The ordinal the next stream to go live gets.
    private(set) var nextOrdinal: UInt64 = 1
    private var expiries: ExpiryWheel<String>

    /// `now`: seconds since 1970.
    init(now: Int64) {
        expiries = ExpiryWheel(now: now)
    }

    var count: Int { byUser.count }

    /// Whether the user has a live stream.
    func isLive(_ userID: String) -> Bool { byUser[userID] != nil }

    /// Makes `channel` the user's live stream; returns the stream it replaces (whose expiry is forgotten), for the
    /// caller to end.
    mutating func makeLive(_ userID: String, channel: any Channel, descriptor: CInt) -> Stream? {
        let previous = byUser.updateValue(Stream(channel: channel, descriptor: descriptor, ordinal: nextOrdinal), forKey: userID)
        nextOrdinal += 1
        if let expiresAt = previous?.expiresAt { expiries.cancel(userID, at: expiresAt) }
        return previous
    }

    /// Removes the user's stream if it is still `channel` (not replaced since); returns whether it was.
    mutating func remove(_ userID: String, channel: any Channel) -> Bool {
        guard let stream = byUser[userID], stream.channel === channel else { return false }
        byUser[userID] = nil
        if let expiresAt = stream.expiresAt { expiries.cancel(userID, at: expiresAt) }
        return true
    }

    enum Expiry: Equatable {
        /// The stream ends when `takeExpired` reaches the second.
        case scheduled
        /// The second is past: the caller ends the stream now (`expireNow`).
        case due
        /// `channel` is no longer the user's stream: nothing to do.
        case notCurrent
    }

    /// Schedules the end of the user's stream `channel` at `second` (seconds since 1970).
    mutating func expire(_ userID: String, channel: any Channel, at second: Int64) -> Expiry {
        guard byUser[userID]?.channel === channel else { return .notCurrent }
        guard expiries.schedule(userID, at: second) else { return .due }
        byUser[userID]?.expiresAt = second
        return .scheduled
    }

    /// The channel of the user's stream, marked as told of its expiry (so it is told once).
    mutating func expireNow(_ userID: String) -> (any Channel)? {
        byUser[userID]?.expiresAt = nil
        return byUser[userID]?.channel
    }

    /// The streams whose token expired by `now` (seconds since 1970), each marked as told.
    mutating func takeExpired(now: Int64) -> [(userID: String, channel: any Channel)] {
        var expired: [(userID: String, channel: any Channel)] = []
        for (userID, second) in expiries.takeDue(now: now) where byUser[userID]?.expiresAt == second {
            if let channel = expireNow(userID) { expired.append((userID, channel)) }
        }
        return expired
    }
}
