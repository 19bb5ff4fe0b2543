#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import Shared

/// Publishing: every event gets the next id, is kept in the history, and goes to each worker that has a recipient
/// of it, in id order (one loop writes every control channel). On a single host the plane gives the ids; with a
/// shared log the log does, and the plane delivers what the log's follower reads (`deliverFromLog`).
extension ControlPlane {
    static let logUnavailable = APIError(status: 503, "The event log is unavailable; the event was not published")

    /// Publishes a validated request, a publisher's or the hub's own (presence): on a single host at once, with a
    /// shared log once the log has committed it (every host, this one included, delivers it from there).
    func submit(_ request: PublishRequest) -> EventLoopFuture<Result<EventID, APIError>> {
        eventLoop.preconditionInEventLoop()
        guard let sharedLog else { return eventLoop.makeSucceededFuture(.success(publish(request))) }
        let (epoch, logger) = (settings.epoch, logger)
        return eventLoop.makeFutureWithTask {
            do {
                return .success(EventID(epoch: epoch, sequence: try await sharedLog.append(request)))
            } catch {
                logger.warning("publish refused: the event log did not confirm it", metadata: ["error": "\(error)", "event": "publish-refused"])
                return .failure(Self.logUnavailable)
            }
        }
    }

    /// Gives the event the next id and delivers it (a single host).
    @discardableResult
    func publish(_ request: PublishRequest) -> EventID {
        eventLoop.preconditionInEventLoop()
        let command = PublishCommand(
            target: request.target, event: request.event, data: request.data, sequence: history.latestSequence + 1,
            publishedAt: WallClock.milliseconds())
        deliver(command)
        return EventID(epoch: settings.epoch, sequence: command.sequence)
    }

    /// Events the shared log's follower read, in the log's order. A position already delivered is skipped (the
    /// follower re-reads after a reconnect); a hole before one (retention deleted rows this host had not read:
    /// it was cut off for longer than the log keeps events) is recorded as evicted, here and in every worker, so
    /// a client resuming from inside it gets `reset` instead of a replay with a gap.
    func deliverFromLog(_ entries: [SharedLogEntry], through cursor: SharedLogCursor) {
        eventLoop.preconditionInEventLoop()
        logCursor = cursor
        for entry in entries {
            switch entry {
            case .event(let command):
                guard command.sequence > history.latestSequence else { continue }
                if command.sequence > history.latestSequence + 1 { skipped(through: command.sequence - 1) }
                deliver(command)
            case .userChange(let change, let hostID):
                applyHubUserChange(change, from: hostID)
            }
        }
    }

    private func skipped(through position: UInt64) {
        logger.error(
            "the event log no longer holds events this host had not read; clients resuming from them get reset",
            metadata: ["after": "\(history.latestSequence)", "through": "\(position)", "event": "log-gap"])
        history.note(evictedThrough: position, latestSequence: position)
        let bounds = HistoryBounds(evictedThrough: position, latestSequence: position)
        // Only to workers that have everything before the hole: a starting one gets the bounds with its history,
        // and a lagging one must not be told of positions past what it has yet to catch up on.
        for shard in shards.indices {
            guard let worker = shards[shard].state.serving, !worker.lagging, let control = worker.control else { continue }
            control.writeAndFlush(ControlMessage.historyEnd(bounds), promise: nil)
            worker.sentThrough = position
        }
    }

    /// Records the event in the history and sends it to every shard's serving worker that has a recipient of it
    /// (a worker that is starting gets it from the history when it says hello, one that lags when it has drained).
    private func deliver(_ command: PublishCommand) {
        history.append(command)
        trimmer.noteChange()
        for shard in shards.indices where isOnShard(command.target, shard) {
            guard let worker = shards[shard].state.serving, !worker.lagging, let control = worker.control else { continue }
            control.writeAndFlush(ControlMessage.publish(command), promise: nil)
            worker.sentThrough = command.sequence
            if !control.isWritable {
                worker.lagging = true
                logger.warning(
                    "worker is lagging behind publishes; holding them in the history until it drains",
                    metadata: ["worker": "\(shard)", "event": "worker-lagging", "sequence": "\(command.sequence)"])
            }
        }
    }

    /// Whether a worker of `shard` receives events for `target`.
    func isOnShard(_ target: PublishTarget, _ shard: Int) -> Bool {
        switch target {
        case .everyone, .topic: true
        case .user(let userID): self.shard(of: userID) == shard
        }
    }

    /// A lagging worker's control channel drained below half the bound: it is reading (so it is alive), and gets
    /// what it missed from the history, in order, until the bound is reached again or it has caught up. If the
    /// history no longer holds everything it missed, it is restarted: its clients reconnect and resume, and a
    /// client whose events are gone is told so (`reset`). Nothing is lost silently.
    func workerDrained(_ worker: WorkerHandle) {
        guard shards[worker.shard].state.serving === worker, worker.lagging, let channel = worker.control else { return }
        if worker.lastAnswer != nil { worker.lastAnswer = .now }
        if history.evictedThrough > worker.sentThrough {
            logger.error(
                "worker fell further behind than the history reaches; restarting it (its clients resume or get reset)",
                metadata: ["worker": "\(worker.shard)", "pid": "\(worker.pid)", "event": "worker-fell-behind"])
            worker.lastAnswer = nil  // like a hung worker: killed, and restarted when reaped
            signal(worker, SIGKILL)
            return
        }
        for command in history.entries(after: worker.sentThrough) where isOnShard(command.target, worker.shard) {
            channel.write(ControlMessage.publish(command), promise: nil)
            worker.sentThrough = command.sequence
            if !channel.isWritable { break }
        }
        channel.flush()
        if channel.isWritable {
            worker.lagging = false
            worker.sentThrough = history.latestSequence
            logger.info("worker caught up", metadata: ["worker": "\(worker.shard)", "event": "worker-caught-up"])
        }
    }
}
