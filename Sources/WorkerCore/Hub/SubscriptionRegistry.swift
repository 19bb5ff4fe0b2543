import NIOCore

/// Who is subscribed to what on one worker, and how many connected subscribers each topic has.
///
/// Topics belong to the user, not to a stream: a user without a stream keeps them for a grace period. Every
/// operation costs what its request names (the topics asked for), never what a user or the worker holds, apart
/// from a user coming, going or being forgotten, which touch that user's own topics, bounded by
/// `maximumTopicsPerUser`.
public struct SubscriptionRegistry: Sendable {
    public struct User: Sendable {
        public var topics: Set<String> = []
        /// When a user without a stream is forgotten (and their topics with them).
        public var forgetAt: NIODeadline?
    }

    /// A subscribe refused whole: it would take the user past `limit` topics.
    public struct TooManyTopics: Error, Equatable {
        public var limit: Int

        public init(limit: Int) { self.limit = limit }
    }

    public let maximumTopicsPerUser: Int
    public private(set) var users: [String: User] = [:]
    /// topic → users subscribed to it (with or without an open stream).
    public private(set) var subscribers: [String: Set<String>] = [:]
    /// topic → subscribers with a live stream, kept up to date as users come and go.
    private var connectedCounts: [String: Int] = [:]
    /// Topics whose connected count changed since `takeChangedCounts`.
    private var changedTopics: Set<String> = []

    public init(maximumTopicsPerUser: Int) {
        self.maximumTopicsPerUser = maximumTopicsPerUser
    }

    public func topics(of userID: String) -> Set<String> { users[userID]?.topics ?? [] }

    /// Adds `topics` to the user's; returns the ones that were new to them. With `enforcingLimit`, a request that
    /// would take the user past `maximumTopicsPerUser` changes nothing and throws.
    public mutating func subscribe(
        _ userID: String, to topics: [String], isLive: Bool, graceUntil: NIODeadline, enforcingLimit: Bool = true
    ) throws(TooManyTopics) -> [String] {
        var user = users[userID] ?? User()
        var added: [String] = []
        var seen: Set<String> = []
        for topic in topics where !user.topics.contains(topic) && seen.insert(topic).inserted { added.append(topic) }
        if enforcingLimit, user.topics.count + added.count > maximumTopicsPerUser {
            throw TooManyTopics(limit: maximumTopicsPerUser)
        }
        for topic in added {
            user.topics.insert(topic)
            subscribers[topic, default: []].insert(userID)
            if isLive { adjustConnected(topic, by: 1) }
        }
        user.forgetAt = isLive ? nil : graceUntil
        users[userID] = user.topics.isEmpty ? nil : user
        return added
    }

    /// Removes `topics` from the user's; returns the ones they had.
    public mutating func unsubscribe(_ userID: String, from topics: [String], isLive: Bool) -> [String] {
        guard var user = users[userID] else { return [] }
        var removed: [String] = []
        for topic in topics where user.topics.remove(topic) != nil {
            removed.append(topic)
            removeSubscriber(userID, from: topic)
            if isLive { adjustConnected(topic, by: -1) }
        }
        users[userID] = user.topics.isEmpty ? nil : user
        return removed
    }

    /// The user has a stream again (none before): their topics count them as connected, and they are kept.
    public mutating func userWentLive(_ userID: String) {
        guard var user = users[userID] else { return }
        user.forgetAt = nil
        users[userID] = user
        for topic in user.topics { adjustConnected(topic, by: 1) }
    }

    /// The user's stream closed: they are no longer counted, and forgotten at `graceUntil` unless they return.
    public mutating func userWentDark(_ userID: String, graceUntil: NIODeadline) {
        guard var user = users[userID] else { return }
        user.forgetAt = graceUntil
        users[userID] = user
        for topic in user.topics { adjustConnected(topic, by: -1) }
    }

    /// Forgets every user without a stream whose grace period ended by `now`; returns who was forgotten.
    public mutating func forgetUsers(dueBy now: NIODeadline) -> [String] {
        let due = users.compactMap { userID, user in user.forgetAt.map { $0 <= now } == true ? userID : nil }
        for userID in due {
            for topic in users[userID]?.topics ?? [] { removeSubscriber(userID, from: topic) }
            users[userID] = nil
        }
        return due
    }

    /// Every topic whose connected count changed since the last call, with its count now (0: none left).
    public mutating func takeChangedCounts() -> [String: Int] {
        var counts: [String: Int] = [:]
        counts.reserveCapacity(changedTopics.count)
        for topic in changedTopics { counts[topic] = connectedCounts[topic] ?? 0 }
        changedTopics.removeAll(keepingCapacity: true)
        return counts
    }

    private mutating func adjustConnected(_ topic: String, by delta: Int) {
        let count = (connectedCounts[topic] ?? 0) + delta
        connectedCounts[topic] = count > 0 ? count : nil
        changedTopics.insert(topic)
    }

    private mutating func removeSubscriber(_ userID: String, from topic: String) {
        subscribers[topic]?.remove(userID)
        if subscribers[topic]?.isEmpty == true { subscribers[topic] = nil }
    }
}
