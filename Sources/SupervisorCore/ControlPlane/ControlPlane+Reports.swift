import NIOCore
import Shared

/// What the plane reports (health, stats) and what operators ask of it (reload).
extension ControlPlane {
    /// Replaces every worker (see `ReloadQueue`); fails with `ReloadRefused` when it cannot begin.
    func reload() -> EventLoopFuture<Void> {
        eventLoop.preconditionInEventLoop()
        let promise = eventLoop.makePromise(of: Void.self)
        reloads.request(promise, plane: self)
        return promise.futureResult
    }

    /// Each shard as health shows it, with the counts of its last reports: no topic is walked or copied.
    var health: HealthBody {
        let workers = shards.indices.map { shard in
            HealthBody.Worker(
                shard: shard, pid: shards[shard].state.newest?.pid, status: shards[shard].state.healthName.rawValue,
                clients: stats.clientsByShard[shard], topics: stats.topicCount(shard: shard), restarts: restarts[shard])
        }
        // A shard whose worker a reload is replacing still serves (the retiring worker holds its streams).
        let healthy = shards.allSatisfy { $0.state.isServing }
        return HealthBody(
            status: healthy ? "healthy" : "degraded",
            services: .init(sse: .init(totalClients: stats.totalClients, totalTopics: stats.topics.count)), workers: workers)
    }
}

/// `{"status":"healthy"|"degraded","services":{"sse":{...}},"workers":[...]}`.
struct HealthBody: Codable, Sendable {
    struct Services: Codable, Sendable {
        var sse: Totals
    }
    struct Totals: Codable, Sendable {
        var totalClients: Int
        var totalTopics: Int
    }
    struct Worker: Codable, Sendable {
        var shard: Int
        var pid: Int32?
        var status: String
        var clients: Int
        var topics: Int
        var restarts: Int
    }

    var status: String
    var services: Services
    var workers: [Worker]
}
