import Shared

/// Every worker's stats, summed as reports arrive: a report costs what it changed, and health reads its totals
/// without walking any topic.
struct StatsLedger: Sendable {
    private(set) var clientsByShard: [Int]
    private var topicsByShard: [[String: Int]]
    /// Connected subscribers of each topic, over every worker (a user lives on one shard, so counts add).
    private(set) var topics: [String: Int] = [:]

    var totalClients: Int { clientsByShard.reduce(0, +) }

    init(shardCount: Int) {
        clientsByShard = Array(repeating: 0, count: shardCount)
        topicsByShard = Array(repeating: [:], count: shardCount)
    }

    func topicCount(shard: Int) -> Int { topicsByShard[shard].count }

    /// The shard's counts as one report: what its worker reported so far.
    func report(shard: Int) -> StatsReport { StatsReport(clients: clientsByShard[shard], topicCounts: topicsByShard[shard]) }

    mutating func apply(_ report: StatsReport, shard: Int) {
        clientsByShard[shard] = report.clients
        for (topic, count) in report.topicCounts {
            let previous = topicsByShard[shard][topic] ?? 0
            topicsByShard[shard][topic] = count > 0 ? count : nil
            adjustTotal(topic, by: count - previous)
        }
    }

    /// The shard's worker is gone or replaced: its counts leave the totals (the next one reports from nothing).
    mutating func reset(shard: Int) {
        clientsByShard[shard] = 0
        for (topic, count) in topicsByShard[shard] { adjustTotal(topic, by: -count) }
        topicsByShard[shard] = [:]
    }

    private mutating func adjustTotal(_ topic: String, by delta: Int) {
        guard delta != 0 else { return }
        let total = (topics[topic] ?? 0) + delta
        topics[topic] = total > 0 ? total : nil
    }
}
