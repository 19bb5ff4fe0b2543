import NIOCore
import Shared

/// What the plane reports (health, stats) and what operators ask of it (reload).
extension ControlPlane {
    /// Queues a reload (see `ReloadQueue`); fails with `ReloadRefused` when it cannot begin. `operator` is the
    /// `ctl reload` connection that waits for its answer, if any.
    func reload(_ kind: ReloadKind = .upgrade, answeringOperatorAt operator: CInt? = nil) -> EventLoopFuture<Void> {
        eventLoop.preconditionInEventLoop()
        let promise = eventLoop.makePromise(of: Void.self)
        reloads.request(ReloadQueue.Request(promise: promise, kind: kind, operatorReply: `operator`), plane: self)
        return promise.futureResult
    }

    /// Each shard as health shows it, with the counts of its last reports: no topic is walked or copied.
    var health: HealthBody {
        let workers = shards.indices.map { shard in
            HealthBody.Worker(
                shard: shard, pid: shards[shard].state.newest?.pid, status: shards[shard].state.healthName.rawValue,
                clients: stats.clientsByShard[shard], topics: stats.topicCount(shard: shard), restarts: restarts[shard])
        }
        // A shard whose worker a reload is replacing still serves (the retiring worker holds its streams). A host
        // cut off from the shared log still serves its streams, but cannot take a publish.
        let healthy = shards.allSatisfy { $0.state.isServing } && logStatus?.reachable != false
        return HealthBody(
            status: healthy ? "healthy" : "degraded",
            services: .init(sse: .init(totalClients: stats.totalClients, totalTopics: stats.topics.count)), workers: workers,
            cluster: logStatus.map { HealthBody.Cluster($0, localClients: stats.totalClients, cursor: history.latestSequence) })
    }

    /// Every worker process, for `ctl workers`: its shard, state, the shard's streams, memory, uptime and restarts.
    var workerRows: [WorkerRow] {
        shards.indices.flatMap { shard in
            let state = shards[shard].state
            return state.workers.map { worker in
                let isNewest = state.newest === worker
                let name = isNewest ? state.healthName.rawValue : (state.isServing ? "retiring" : state.name.rawValue)
                return WorkerRow(
                    shard: shard, pid: worker.pid, state: name, streams: isNewest ? stats.clientsByShard[shard] : 0,
                    memoryKiB: ProcessStat.residentKilobytes(pid: String(worker.pid)),
                    uptimeSeconds: Double(worker.uptime.components.seconds) + Double(worker.uptime.components.attoseconds) / 1e18,
                    restarts: restarts[shard])
            }
        }
    }

    /// The stats of the hub: this host's live counts, plus (with a shared log) every other host's last heartbeat,
    /// each host's totals under `hosts`.
    var hubStats: StatsBody {
        guard let logStatus else { return StatsBody(totalClients: stats.totalClients, topics: stats.topics) }
        var topics = stats.topics
        var clients = stats.totalClients
        var hosts = [logStatus.hostID: StatsBody.HostTotals(totalClients: stats.totalClients, totalTopics: stats.topics.count)]
        for host in logStatus.hosts where host.hostID != logStatus.hostID {
            clients += host.clients
            topics.merge(host.topics, uniquingKeysWith: +)
            hosts[host.hostID] = StatsBody.HostTotals(totalClients: host.clients, totalTopics: host.topics.count)
        }
        return StatsBody(totalClients: clients, topics: topics, hosts: hosts)
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

    /// With a shared log: this host's link to it, and when each host last beat.
    struct Cluster: Codable, Sendable {
        struct Host: Codable, Sendable {
            var hostId: String
            var lastHeartbeatMsAgo: Int64
            var cursor: UInt64
            var totalClients: Int
        }
        var hostId: String
        /// "up" or "unreachable".
        var eventLog: String
        var error: String?
        /// The last position this host delivered.
        var cursor: UInt64
        var hosts: [Host]

        init(_ status: SharedLogStatus, localClients: Int, cursor: UInt64) {
            hostId = status.hostID
            eventLog = status.reachable ? "up" : "unreachable"
            error = status.lastError
            self.cursor = cursor
            hosts = status.hosts.map {
                Host(
                    hostId: $0.hostID, lastHeartbeatMsAgo: $0.heartbeatAgeMilliseconds, cursor: $0.cursor,
                    totalClients: $0.hostID == status.hostID ? localClients : $0.clients)
            }
        }
    }

    var status: String
    var services: Services
    var workers: [Worker]
    var cluster: Cluster?
}
