/// Moves one shard through its states (`ShardState`), one event at a time: the only code that changes a shard's
/// state. It performs nothing itself: each transition says what the control plane must do (`Action`) and names
/// the transition for the log (`SSE_EVENT`). An event that does not apply (a late event of an earlier worker, a
/// reload asked of a shard that is down) is ignored, with the reason, and changes nothing.
public struct ShardMachine<Worker: ShardWorker> {
    public enum Action {
        /// Start a worker for the shard now, then report `spawned` (or `spawnFailed`).
        case spawn
        /// Report `restartDue` at this time.
        case scheduleSpawn(at: ContinuousClock.Instant)
        /// The worker said hello: give it the shard's topics and history; from now on it is served live.
        case replayHistory(Worker)
        /// Tell the retiring worker to pass its streams on (they reach the successor through the hand-off table).
        case beginMigration(retiring: Worker, successor: Worker)
        /// Tell the worker to stop (it ends or has passed on its streams, and exits).
        case stop(Worker)
        /// The worker's process is gone: close what the supervisor holds of it.
        case release(Worker)
    }

    public struct Transition {
        public var from: ShardStateName
        public var to: ShardStateName
        public var event: ShardEvent
        public var actions: [Action]
    }

    public enum Ignored: Equatable, Sendable, CustomStringConvertible {
        /// The event came from a worker that is no longer one of the shard's.
        case staleWorker(generation: Int)
        /// The event has no meaning in the shard's state.
        case notApplicable(event: String, state: ShardStateName)

        public var description: String {
            switch self {
            case .staleWorker(let generation): "from an earlier worker of the shard (generation \(generation))"
            case .notApplicable(let event, let state): "\(event) does not apply to a shard that is \(state.rawValue)"
            }
        }
    }

    public enum Outcome {
        case moved(Transition)
        case ignored(Ignored)
    }

    public let shard: Int
    public let backoff: RestartBackoff
    public private(set) var state: ShardState<Worker> = .idle

    public init(shard: Int, backoff: RestartBackoff = RestartBackoff()) {
        self.shard = shard
        self.backoff = backoff
    }

    // MARK: Events

    /// The supervisor runs: start the shard's first worker.
    public mutating func start(now: ContinuousClock.Instant) -> Outcome {
        guard case .idle = state else { return notApplicable("start") }
        return move(to: .down(Down(restartAt: now, failures: 0)), event: .shardStarting, [.spawn])
    }

    /// The supervisor re-executed itself in place (an upgrade) and took over the worker its previous program ran:
    /// it is up already (it has the history), and keeps the failures in a row that preceded it.
    public mutating func adopted(_ worker: Worker, failures: Int) -> Outcome {
        guard case .idle = state else { return notApplicable("adopted") }
        return move(to: .up(Running(worker: worker, failures: failures)), event: .workerAdopted)
    }

    /// A scheduled restart is due.
    public mutating func restartDue(now: ContinuousClock.Instant) -> Outcome {
        switch state {
        case .down(let down) where down.restartAt <= now:
            return move(to: state, event: .restartDue, [.spawn])
        case .replacing(let replacing):
            guard case .down(let down) = replacing.successor, down.restartAt <= now else { return notApplicable("restart-due") }
            return move(to: state, event: .restartDue, [.spawn])
        default:
            return notApplicable("restart-due")
        }
    }

    /// The worker asked for by `.spawn` runs.
    public mutating func spawned(_ worker: Worker) -> Outcome {
        switch state {
        case .down(let down):
            return move(to: .starting(Running(worker: worker, failures: down.failures)), event: .workerStarted)
        case .replacing(var replacing):
            guard case .down(let down) = replacing.successor else { return notApplicable("spawned") }
            replacing.successor = .starting(Running(worker: worker, failures: down.failures))
            return move(to: .replacing(replacing), event: .workerStarted)
        default:
            return notApplicable("spawned")
        }
    }

    /// The worker asked for by `.spawn` could not be started: try again after the back-off.
    public mutating func spawnFailed(now: ContinuousClock.Instant) -> Outcome {
        switch state {
        case .down(let down):
            let next = nextAttempt(after: down.failures + 1, now: now)
            return move(to: .down(next), event: .spawnFailed, [.scheduleSpawn(at: next.restartAt)])
        case .replacing(var replacing):
            guard case .down(let down) = replacing.successor else { return notApplicable("spawn-failed") }
            let next = nextAttempt(after: down.failures + 1, now: now)
            replacing.successor = .down(next)
            return move(to: .replacing(replacing), event: .spawnFailed, [.scheduleSpawn(at: next.restartAt)])
        default:
            return notApplicable("spawn-failed")
        }
    }

    /// The worker said hello: it gets the history and serves; a reload's successor then takes the streams over.
    public mutating func helloReceived(generation: Int) -> Outcome {
        switch state {
        case .starting(let running):
            guard running.worker.generation == generation else { return .ignored(.staleWorker(generation: generation)) }
            return move(to: .up(running), event: .workerReady, [.replayHistory(running.worker)])
        case .replacing(var replacing):
            guard case .starting(let running) = replacing.successor, running.worker.generation == generation else {
                return .ignored(.staleWorker(generation: generation))
            }
            replacing.successor = .up(running)
            var actions: [Action] = [.replayHistory(running.worker)]
            if replacing.phase == .awaitingSuccessor {
                replacing.phase = .passingStreams
                actions.append(.beginMigration(retiring: replacing.retiring, successor: running.worker))
            }
            return move(to: .replacing(replacing), event: .workerReady, actions)
        default:
            return workerEvent("hello", generation: generation)
        }
    }

    /// A reload asks for the worker to be replaced; only a shard that is up can be.
    public mutating func reloadAsked(now: ContinuousClock.Instant) -> Outcome {
        guard case .up(let running) = state else { return notApplicable("reload") }
        let replacing = Replacing(
            retiring: running.worker, phase: .awaitingSuccessor, successor: .down(Down(restartAt: now, failures: 0)))
        return move(to: .replacing(replacing), event: .workerReplacing, [.spawn])
    }

    /// The retiring worker has passed every stream on: it is told to stop.
    public mutating func migrationFinished(generation: Int) -> Outcome {
        stopRetiring(generation: generation, event: .passedStreams)
    }

    /// The retiring worker did not finish passing its streams on in time: it is told to stop anyway (the streams
    /// it still holds end, and their clients reconnect and resume).
    public mutating func migrationTimedOut(generation: Int) -> Outcome {
        stopRetiring(generation: generation, event: .migrationTimedOut)
    }

    /// A worker process exited (reaped), having run for `ranFor`.
    public mutating func exited(generation: Int, ranFor: Duration, now: ContinuousClock.Instant) -> Outcome {
        switch state {
        case .starting(let running), .up(let running):
            guard running.worker.generation == generation else { return .ignored(.staleWorker(generation: generation)) }
            let next = nextAttempt(after: backoff.failures(after: running.failures, ranFor: ranFor), now: now)
            return move(to: .down(next), event: .workerExited, [.release(running.worker), .scheduleSpawn(at: next.restartAt)])
        case .replacing(var replacing):
            if replacing.retiring.generation == generation {
                return move(to: replacing.successor.asShardState, event: .workerRetired, [.release(replacing.retiring)])
            }
            let running: Running<Worker>
            switch replacing.successor {
            case .starting(let successor), .up(let successor): running = successor
            case .down: return .ignored(.staleWorker(generation: generation))
            }
            guard running.worker.generation == generation else { return .ignored(.staleWorker(generation: generation)) }
            let next = nextAttempt(after: backoff.failures(after: running.failures, ranFor: ranFor), now: now)
            replacing.successor = .down(next)
            return move(
                to: .replacing(replacing), event: .workerExited, [.release(running.worker), .scheduleSpawn(at: next.restartAt)])
        case .stopping(var workers):
            guard let index = workers.firstIndex(where: { $0.generation == generation }) else {
                return .ignored(.staleWorker(generation: generation))
            }
            let worker = workers.remove(at: index)
            return move(to: workers.isEmpty ? .stopped : .stopping(workers), event: .workerExited, [.release(worker)])
        case .idle, .down, .stopped:
            return .ignored(.staleWorker(generation: generation))
        }
    }

    /// The supervisor shuts down: every worker is told to stop, and nothing restarts.
    public mutating func shutdownAsked() -> Outcome {
        switch state {
        case .stopping, .stopped:
            return notApplicable("shutdown")
        default:
            let workers = state.workers
            return move(to: workers.isEmpty ? .stopped : .stopping(workers), event: .shardStopping, workers.map { .stop($0) })
        }
    }

    // MARK: Helpers

    private mutating func stopRetiring(generation: Int, event: ShardEvent) -> Outcome {
        guard case .replacing(var replacing) = state else { return workerEvent(event.rawValue, generation: generation) }
        guard replacing.retiring.generation == generation else { return .ignored(.staleWorker(generation: generation)) }
        guard replacing.phase == .passingStreams else { return notApplicable(event.rawValue) }
        replacing.phase = .stopping
        return move(to: .replacing(replacing), event: event, [.stop(replacing.retiring)])
    }

    private func nextAttempt(after failures: Int, now: ContinuousClock.Instant) -> Down {
        Down(restartAt: now + backoff.delay(afterFailures: failures), failures: failures)
    }

    /// A worker's event the state has no use for: from a worker that is not one of the shard's (stale), or from one
    /// that is, at the wrong time (a second hello, a migration it was not asked for).
    private func workerEvent(_ event: String, generation: Int) -> Outcome {
        state.workers.contains { $0.generation == generation } ? notApplicable(event) : .ignored(.staleWorker(generation: generation))
    }

    private func notApplicable(_ event: String) -> Outcome {
        .ignored(.notApplicable(event: event, state: state.name))
    }

    private mutating func move(to next: ShardState<Worker>, event: ShardEvent, _ actions: [Action] = []) -> Outcome {
        let from = state.name
        state = next
        return .moved(Transition(from: from, to: next.name, event: event, actions: actions))
    }
}

/// What a transition was, named for the log (`SSE_EVENT`).
public enum ShardEvent: String, Sendable, CaseIterable {
    case shardStarting = "shard-starting"
    case restartDue = "worker-restart-due"
    case workerStarted = "worker-started"
    case workerAdopted = "worker-adopted"
    case spawnFailed = "worker-spawn-failed"
    case workerReady = "worker-ready"
    case workerReplacing = "worker-replacing"
    case passedStreams = "worker-passed-streams"
    case migrationTimedOut = "migration-timed-out"
    case workerExited = "worker-exited"
    case workerRetired = "worker-retired"
    case shardStopping = "shard-stopping"
}
