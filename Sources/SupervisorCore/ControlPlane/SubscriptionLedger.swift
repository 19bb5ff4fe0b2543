import Shared

/// Every user's topics, per shard, as the workers reported them: a worker that starts gets its shard's back.
struct SubscriptionLedger: Sendable {
    private var usersByShard: [[String: Set<String>]]

    init(shardCount: Int) {
        usersByShard = Array(repeating: [:], count: shardCount)
    }

    mutating func subscribed(_ change: UserTopics, shard: Int) {
        usersByShard[shard][change.userID, default: []].formUnion(change.topics)
    }

    mutating func unsubscribed(_ change: UserTopics, shard: Int) {
        guard var topics = usersByShard[shard][change.userID] else { return }
        topics.subtract(change.topics)
        usersByShard[shard][change.userID] = topics.isEmpty ? nil : topics
    }

    mutating func forgotten(_ userID: String, shard: Int) {
        usersByShard[shard][userID] = nil
    }

    /// The shard's users with their topics, in frames' worth (see `UserTopics.chunks`).
    func restoreMessages(shard: Int) -> [UserTopics] {
        usersByShard[shard].flatMap { userID, topics in UserTopics(userID: userID, topics: Array(topics)).chunks() }
    }

    /// Topics kept elsewhere (a shared log, the previous program of this process), on the user's shard.
    mutating func restore(_ change: UserTopics) {
        subscribed(change, shard: ShardFunction.shard(for: change.userID, shardCount: usersByShard.count))
    }

    /// Every user's topics, in no particular order (an in-place upgrade carries them over).
    var everyUser: [(userID: String, topics: Set<String>)] {
        usersByShard.flatMap { $0.map { (userID: $0.key, topics: $0.value) } }
    }

    func userCount(shard: Int) -> Int { usersByShard[shard].count }

    func topics(of userID: String, shard: Int) -> Set<String> { usersByShard[shard][userID] ?? [] }
}
