import Logging
import Shared

/// A user is one user across the hosts of a hub (`--postgres-url`): what this host's workers say of their users
/// (topics taken and dropped, streams opened and closed) goes to the shared log, and what the other hosts said
/// comes back from it, in the log's order, to this host's workers. So topics subscribed through one host apply to
/// the user's stream on another; the database counts every user's streams across hosts and ends the oldest past
/// `--max-streams-per-user` wherever it is (`replaced`); and the grace after a user's last stream is kept by the hub
/// (the database forgets the user; every host hears `forgotten`).
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

    func streamOpenedHere(_ stream: UserStream) {
        sharedLog?.record(.streamOpened(stream, shard: shard(of: stream.userID)))
    }

    func streamClosedHere(_ stream: UserStream) {
        sharedLog?.record(.streamClosed(stream))
    }

    /// A worker died: the streams it held are gone, and the hub must stop counting them. (A worker that retires after
    /// a reload passed its streams on; one that stops with the host leaves with it.)
    func streamsLostWith(_ worker: WorkerHandle) {
        guard let sharedLog, !shuttingDown, shards[worker.shard].state.newest === worker else { return }
        sharedLog.record(.streamsLost(shard: worker.shard))
    }

    /// A change read from the log. This host's own topic changes were applied when its worker made them; another
    /// host's are applied to the ledger and to the user's workers here. The database's decisions (a stream ended
    /// past the limit, a user forgotten) apply to whoever they name.
    func applyHubUserChange(_ change: UserChange, from hostID: String) {
        let isOwn = hostID == sharedLog?.hostID
        switch change {
        case .subscribed(let topics):
            guard !isOwn else { return }
            let shard = shard(of: topics.userID)
            subscriptions.subscribed(topics, shard: shard)
            tellWorkers(of: shard, .restoreTopics(topics))
        case .unsubscribed(let topics):
            guard !isOwn else { return }
            let shard = shard(of: topics.userID)
            subscriptions.unsubscribed(topics, shard: shard)
            tellWorkers(of: shard, .dropTopics(topics))
        case .replaced(let stream):
            guard isOwn else { return }
            tellWorkers(of: shard(of: stream.userID), .endStream(stream))
        case .forgotten(let userID):
            let shard = shard(of: userID)
            let topics = subscriptions.topics(of: userID, shard: shard)
            subscriptions.forgotten(userID, shard: shard)
            if !topics.isEmpty {
                for part in UserTopics(userID: userID, topics: Array(topics)).chunks() { tellWorkers(of: shard, .dropTopics(part)) }
            }
        case .streamOpened, .streamClosed, .streamsLost:
            break  // the database counts them; hosts hear what follows from them (`replaced`, presence events)
        }
    }

    /// Every worker of the shard that has a control channel: a retiring one and its successor alike (each change is
    /// idempotent, and whichever holds the user's stream must have it).
    private func tellWorkers(of shard: Int, _ message: ControlMessage) {
        for worker in shards[shard].state.workers { worker.control?.writeAndFlush(message, promise: nil) }
    }
}
