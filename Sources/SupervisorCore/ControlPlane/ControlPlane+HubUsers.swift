import Logging
import Shared

/// A user is one user across the hosts of a hub (`--postgres-url`): what this host's workers say of their users
/// (topics taken and dropped, streams opened and closed) goes to the shared log, and what the other hosts said
/// comes back from it, in the log's order, to this host's workers. So topics subscribed through one host apply to
/// the user's stream on another, a new stream on one host ends the user's stream on the others, and the grace
/// after a user's last stream is kept by the hub (the database forgets the user; every host hears `forgotten`).
extension ControlPlane {
    /// A worker changed a user's topics (it has already applied them, and the ledger holds them): the other hosts
    /// hear it through the log.
    func recordTopicsChange(_ message: ControlMessage) {
        guard let sharedLog else { return }
        switch message {
        case .subscribed(let change): sharedLog.record(.subscribed(change))
        case .unsubscribed(let change): sharedLog.record(.unsubscribed(change))
        default: break
        }
    }

    /// A worker holds a subscribe's answer until the change is in the log: answered on one host at once.
    func answerWhenChangesLogged(_ token: UInt64, to worker: WorkerHandle) {
        guard let sharedLog, let control = worker.control else {
            worker.control?.writeAndFlush(ControlMessage.changesLogged(token, committed: true), promise: nil)
            return
        }
        eventLoop.makeFutureWithTask { try await sharedLog.changesCommitted() }.whenComplete { result in
            let committed = (try? result.get()) != nil
            control.writeAndFlush(ControlMessage.changesLogged(token, committed: committed), promise: nil)
        }
    }

    func streamOpenedHere(_ userID: String) {
        guard let sharedLog else { return }
        // Until the log gives this record back, a stream the user opens on another host is older than this one.
        streamsOpenedHereUnlogged[userID, default: 0] += 1
        sharedLog.record(.streamOpened(userID: userID))
    }

    func streamClosedHere(_ userID: String) {
        sharedLog?.record(.streamClosed(userID: userID))
    }

    /// A change read from the log. This host's own were applied when its worker made them; another host's are
    /// applied to the ledger and to the user's workers here.
    func applyHubUserChange(_ change: UserChange, from hostID: String) {
        let isOwn = hostID == sharedLog?.hostID
        let shard = shard(of: change.userID)
        switch change {
        case .subscribed(let topics):
            guard !isOwn else { return }
            subscriptions.subscribed(topics, shard: shard)
            tellWorkers(of: shard, .restoreTopics(topics))
        case .unsubscribed(let topics):
            guard !isOwn else { return }
            subscriptions.unsubscribed(topics, shard: shard)
            tellWorkers(of: shard, .dropTopics(topics))
        case .streamOpened(let userID):
            if isOwn {
                let left = (streamsOpenedHereUnlogged[userID] ?? 1) - 1
                streamsOpenedHereUnlogged[userID] = left > 0 ? left : nil
            } else if streamsOpenedHereUnlogged[userID] == nil {
                // The newest stream of the user is on that host: end the one here, as a new stream would on one host.
                tellWorkers(of: shard, .endStream(userID))
            }
        case .forgotten(let userID):
            let topics = subscriptions.topics(of: userID, shard: shard)
            subscriptions.forgotten(userID, shard: shard)
            if !topics.isEmpty {
                for part in UserTopics(userID: userID, topics: Array(topics)).chunks() { tellWorkers(of: shard, .dropTopics(part)) }
            }
        case .streamClosed:
            break  // the database's own record (it starts the user's grace); hosts are not told
        }
    }

    /// Every worker of the shard that has a control channel: a retiring one and its successor alike (each change is
    /// idempotent, and whichever holds the user's stream must have it).
    private func tellWorkers(of shard: Int, _ message: ControlMessage) {
        for worker in shards[shard].state.workers { worker.control?.writeAndFlush(message, promise: nil) }
    }
}
