import Logging
import NIOCore
import Shared

/// What a reload does.
enum ReloadKind: Sendable, Equatable {
    /// `systemctl reload`, SIGHUP, `ctl reload`: the supervisor re-executes the installed binary in place
    /// (`InPlaceUpgrade`), keeping every descriptor and its state, then every worker is replaced as below.
    case upgrade
    /// `ctl reload --workers-only`: every worker is replaced; the supervisor stays as it is.
    case workersOnly
}

/// Reloads, one after another, on the control plane's loop. Replacing the workers (after an upgrade, or alone):
/// every worker is replaced by a freshly started `sse-worker` (a new binary, if one was installed), one shard at a
/// time, and its live streams move to the new worker on the same TCP connections. Clients see nothing: no reconnect,
/// no lost, repeated or reordered event.
///
/// 1. asks the installed worker binary for its protocol versions (`ProgramProbe`), and is refused, before any worker
///    is touched, when they are not those of the supervisor that will run it;
/// 2. for each shard, asks its machine for `reloadAsked`: the current worker becomes the retiring one (connections
///    and publishes stop reaching it) and its successor is started; once the successor is up (it has the history),
///    the retiring worker is told to `migrate`: it writes out what it queued for each stream, then passes the
///    stream's descriptor back over its hand-off socket with the last sequence it wrote, and `MigrationForwarder`
///    passes it to the successor, which continues after that sequence; then `migrationDone`,
///    and the retiring worker is told to stop, and is reaped: the shard is replaced, and the next one begins.
/// A retiring worker that dies midway takes its streams with it: those clients reconnect and resume, and nothing
/// else is affected. All of it is the shard's state machine's doing (`ShardMachine`); this only sequences shards.
/// A class owned by the control plane, on its loop.
final class ReloadQueue {
    struct Request {
        var promise: EventLoopPromise<Void>
        var kind: ReloadKind
        /// The `ctl reload` connection waiting for the answer: an in-place upgrade carries it to the new program.
        var operatorReply: CInt?
    }

    private var waiting: [Request] = []
    private var current: Run?

    private struct Run {
        var request: Request
        /// The shard being replaced.
        var shard = 0
    }

    /// Queues a reload; its promise succeeds when it is done, or fails with `ReloadRefused`.
    func request(_ request: Request, plane: ControlPlane) {
        waiting.append(request)
        if current == nil { startNext(plane) }
    }

    /// The running reload's `ctl reload` connection, and the reloads queued behind it: an in-place upgrade
    /// carries them over to the new program.
    var carriedOver: (operatorReplies: [CInt], queued: [UpgradeState.QueuedReload]) {
        (
            current?.request.operatorReply.map { [$0] } ?? [],
            waiting.map { UpgradeState.QueuedReload(workersOnly: $0.kind == .workersOnly, operatorReply: $0.operatorReply) }
        )
    }

    private func isCurrent(_ request: Request) -> Bool {
        current?.request.promise.futureResult === request.promise.futureResult
    }

    private func startNext(_ plane: ControlPlane) {
        guard current == nil, !waiting.isEmpty else { return }
        let request = waiting.removeFirst()
        guard !plane.shuttingDown else { return request.promise.fail(ReloadRefused.shuttingDown) }
        current = Run(request: request)
        let bound = plane.bound
        switch request.kind {
        case .workersOnly:
            let path = plane.settings.workerPath
            ProgramProbe.workerProtocols(at: path, children: plane.children, eventLoop: plane.eventLoop).whenSuccess { installed in
                let plane = bound.value
                // Shutdown may have abandoned this reload while the probe ran.
                guard plane.reloads.isCurrent(request) else { return }
                guard installed == WireProtocol.versions else {
                    return plane.reloads.refuse(.incompatible(installed: installed, wanted: WireProtocol.versions, path: path), plane: plane)
                }
                plane.logger.notice("reload: replacing every worker", metadata: ["event": "reload-begin"])
                SystemdNotifier.notify(.reloading)
                plane.reloads.replaceCurrentShard(plane)
            }
        case .upgrade:
            InPlaceUpgrade.preflight(plane).whenSuccess { result in
                let plane = bound.value
                guard plane.reloads.isCurrent(request) else { return }
                switch result {
                case .failure(let refusal):
                    plane.reloads.refuse(refusal, plane: plane)
                case .success(let candidate):
                    // Returns only when the hand-over did not happen: everything runs on as before.
                    InPlaceUpgrade.handOver(to: candidate, plane: plane).whenSuccess { refusal in
                        let plane = bound.value
                        guard plane.reloads.isCurrent(request) else { return }
                        plane.reloads.refuse(refusal, plane: plane)
                    }
                }
            }
        }
    }

    private func refuse(_ refusal: ReloadRefused, plane: ControlPlane) {
        plane.logger.error("\(refusal)", metadata: ["event": "reload-refused", "code": "\(refusal.code)"])
        finish(.failure(refusal), plane: plane)
    }

    /// Asks the current shard's machine to replace its worker; a shard that is not up is skipped (it is being
    /// restarted anyway, by the binary installed now).
    private func replaceCurrentShard(_ plane: ControlPlane) {
        guard let run = current else { return }
        guard run.shard < plane.shards.count else {
            SystemdNotifier.notify(.ready)
            plane.logger.notice("reload done", metadata: ["event": "reload-done"])
            plane.metrics.reloads.increment()
            return finish(.success(()), plane: plane)
        }
        let shard = run.shard
        let outcome = plane.shards[shard].reloadAsked(now: .now)
        if case .ignored = outcome {
            plane.logger.warning("reload skipped a worker that is not up (it is being restarted anyway)", metadata: ["worker": "\(shard)"])
            current?.shard += 1
            return replaceCurrentShard(plane)
        }
        let bound = plane.bound
        plane.eventLoop.scheduleTask(in: .seconds(30)) {
            let plane = bound.value
            guard plane.reloads.current?.shard == shard, case .replacing(let replacing) = plane.shards[shard].state,
                replacing.phase == .awaitingSuccessor
            else { return }
            plane.logger.error(
                "the new worker did not come up; the retiring one serves its streams until one does",
                metadata: ["worker": "\(shard)", "event": "reload-successor-late"])
        }
        plane.apply(outcome, shard: shard)
    }

    /// The shard left `replacing` (its retiring worker is gone): on to the next.
    func shardReplaced(_ shard: Int, plane: ControlPlane) {
        guard current?.shard == shard else { return }
        plane.logger.info(
            "worker replaced", metadata: ["worker": "\(shard)", "pid": "\(plane.shards[shard].state.newest.map { "\($0.pid)" } ?? "none")", "event": "worker-replaced"])
        current?.shard += 1
        let bound = plane.bound
        // After the transition that ended the replacement has been applied in full.
        plane.eventLoop.execute { bound.value.reloads.replaceCurrentShard(bound.value) }
    }

    private func finish(_ result: Result<Void, ReloadRefused>, plane: ControlPlane) {
        current?.request.promise.completeWith(result.mapError { $0 as any Error })
        current = nil
        startNext(plane)
    }

    /// Shutdown: every reload, the running one and those waiting, fails with `ReloadRefused.shuttingDown`.
    func abandon(logger: Logger) {
        if let current {
            logger.warning("reload abandoned: the server is shutting down", metadata: ["event": "reload-abandoned", "worker": "\(current.shard)"])
            current.request.promise.fail(ReloadRefused.shuttingDown)
        }
        current = nil
        for request in waiting { request.promise.fail(ReloadRefused.shuttingDown) }
        waiting = []
    }
}
