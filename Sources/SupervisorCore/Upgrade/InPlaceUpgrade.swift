import Foundation
import Logging
import NIOCore
import Shared
import SystemPackage

/// `systemctl reload` upgrades the supervisor in place: it re-executes the binary installed at the path it was
/// started from (`execve`: same pid, so systemd's `MainPID` and the cgroup stay), and the new program carries on with
/// every descriptor and everything a client could notice (`UpgradeState`); then the reload replaces the workers as
/// it always has. On the control plane's loop.
///
/// Nothing changes until the upgrade is certain to be possible:
/// 1. Pre-flight (`preflight`): the installed binary runs `sse-supervisor upgrade-check` on the state as it is now
///    and answers with its release and protocols, or why it cannot take the state over; a missing, broken or hanging
///    binary, or one that cannot read the state, refuses the reload. The installed worker must speak the protocols
///    of the new supervisor (which starts the new workers).
/// 2. Hand-over (`HandOver`), each step undone if a later one fails: every shard is up or down (none starting or
///    being replaced); the accept thread stops (new connections wait in the listening sockets' backlog); the
///    connections the supervisor serves itself finish (publishes answered); the workers' control channels stop
///    being read; with a shared log, the users' changes are written; each control channel's writes are flushed to
///    its socket and further writes wait (`ControlFrameHandler.seal`): what waits is carried over as bytes.
/// 3. The state goes to a memory file, every descriptor it names loses close-on-exec, and `execve` runs. If it
///    fails, everything is undone and this program runs on: the reload fails with the reason.
enum InPlaceUpgrade {
    /// The installed supervisor that passed the pre-flight: where it is, and what it answered (`UpgradeCheck`).
    struct Candidate: Sendable, Equatable {
        struct Answer: Sendable, Equatable, Codable {
            var release: String
            var protocols: String
            var format: Int
        }

        var path: String
        var answer: Answer
    }

    static let preflightPatience: TimeAmount = .seconds(10)

    /// Runs the pre-flight; on the plane's loop.
    static func preflight(_ plane: ControlPlane) -> EventLoopFuture<Result<Candidate, ReloadRefused>> {
        let loop = plane.eventLoop
        guard let resources = plane.upgrade else {
            return loop.makeSucceededFuture(.failure(.binaryUnusable(path: "?", reason: "is unknown: this supervisor was not started to upgrade")))
        }
        let path = resources.executable
        let stateFile: CInt
        do {
            let state = plane.upgradeState(held: AcceptHandOver.Held(), unsent: [:], resources: resources)
            stateFile = try UpgradeStateFile.write(state)
        } catch {
            return loop.makeSucceededFuture(.failure(.notSteady("the state could not be written: \(error)")))
        }
        let (bound, workerPath) = (plane.bound, plane.settings.workerPath)
        return ProgramProbe.run(
            path, arguments: [UpgradeCheck.commandName], input: stateFile, children: plane.children, eventLoop: loop,
            patience: preflightPatience
        ).flatMap { outcome -> EventLoopFuture<Result<Candidate, ReloadRefused>> in
            Syscall.close(stateFile)
            let answer: Candidate.Answer
            switch outcome {
            case .unstartable(let errno):
                return loop.makeSucceededFuture(.failure(.binaryUnusable(path: path, reason: "cannot be started (\(errno))")))
            case .hung:
                return loop.makeSucceededFuture(
                    .failure(.binaryUnusable(path: path, reason: "did not finish its pre-flight within \(preflightPatience.nanoseconds / 1_000_000_000) s")))
            case .finished(.exited(UpgradeCheck.refusedStatus), let output):
                return loop.makeSucceededFuture(.failure(.stateRefused(path: path, reason: output)))
            case .finished(let status, let output) where !status.isCleanExit:
                return loop.makeSucceededFuture(
                    .failure(.binaryUnusable(path: path, reason: "failed its pre-flight (\(status)): \(output.prefix(300))")))
            case .finished(_, let output):
                guard let parsed = try? JSONDecoder().decode(Candidate.Answer.self, from: Data(output.utf8)) else {
                    return loop.makeSucceededFuture(
                        .failure(.binaryUnusable(path: path, reason: "answered its pre-flight with something not sse-supervisor's: \(output.prefix(300))")))
                }
                answer = parsed
            }
            return ProgramProbe.workerProtocols(at: workerPath, children: bound.value.children, eventLoop: loop).map { installed in
                guard installed == answer.protocols else {
                    return .failure(.incompatible(installed: installed, wanted: answer.protocols, path: workerPath))
                }
                return .success(Candidate(path: path, answer: answer))
            }
        }
    }

    /// Hands over to the candidate. The future completes only if the upgrade did not happen (everything runs on as
    /// before), with why.
    static func handOver(to candidate: Candidate, plane: ControlPlane) -> EventLoopFuture<ReloadRefused> {
        HandOver(plane: plane, candidate: candidate).run()
    }
}

/// One hand-over, step by step, with what each step did so it can be undone. On the plane's loop.
private final class HandOver {
    private let plane: ControlPlane
    private let resources: UpgradeResources
    private let candidate: InPlaceUpgrade.Candidate
    private var path: String { candidate.path }
    private let loop: any EventLoop
    private var accept: AcceptHandOver.Held?
    private var stoppedReading: [any Channel] = []
    private var sealed: [(worker: WorkerHandle, framing: ControlFrameHandler)] = []

    init(plane: ControlPlane, candidate: InPlaceUpgrade.Candidate) {
        self.plane = plane
        self.resources = plane.upgrade!
        self.candidate = candidate
        loop = plane.eventLoop
    }

    private var logger: Logger { plane.logger }

    func run() -> EventLoopFuture<ReloadRefused> {
        logger.notice(
            "upgrade: handing over to the installed release",
            metadata: ["event": "upgrade-begin", "from": "\(Release.version)", "to": "\(candidate.answer.release)", "path": "\(path)"])
        SystemdNotifier.notify(.reloading)
        // Every step runs on the loop: the closures reach this object through a loop-bound reference.
        let this = NIOLoopBound(self, eventLoop: loop)
        return waitFor(within: .seconds(10), { [plane] in plane.unsteadyShard == nil })
            .flatMap { steady -> EventLoopFuture<AcceptHandOver.Held?> in
                guard steady else { return this.value.loop.makeSucceededFuture(nil) }
                return this.value.pauseAccept()
            }
            .flatMap { held -> EventLoopFuture<ReloadRefused?> in
                let session = this.value
                guard let held else {
                    return session.loop.makeSucceededFuture(.notSteady(session.plane.unsteadyShard ?? "the accept thread did not stop"))
                }
                session.accept = held
                session.stopReadingWorkers()
                return session.waitFor(within: .seconds(5), { [resources = session.resources] in resources.localConnections.count == 0 })
                    .flatMap { _ in this.value.logChangesWritten() }
                    .flatMap { refusal in
                        if let refusal { return this.value.loop.makeSucceededFuture(refusal) }
                        return this.value.flushAndSealWorkers()
                    }
            }
            .map { refusal in
                let session = this.value
                let outcome = refusal ?? session.execute()
                session.undo()
                session.logger.error("\(outcome)", metadata: ["event": "upgrade-failed", "code": "\(outcome.code)"])
                SystemdNotifier.notify(.ready)
                return outcome
            }
    }

    // MARK: Steps

    private func pauseAccept() -> EventLoopFuture<AcceptHandOver.Held?> {
        let promise = loop.makePromise(of: AcceptHandOver.Held?.self)
        resources.accept.pause { held in promise.succeed(held) }
        // An accept thread that does not stop (it has ended: shutdown) leaves nothing to hand over.
        loop.scheduleTask(in: .seconds(2)) { promise.succeed(nil) }
        return promise.futureResult
    }

    private func stopReadingWorkers() {
        for worker in plane.shards.flatMap(\.state.workers) {
            guard let channel = worker.control else { continue }
            try? channel.syncOptions?.setOption(ChannelOptions.autoRead, value: false)
            stoppedReading.append(channel)
        }
        // Publishers' connections kept between requests close now (or after the answer under way): the new program
        // cannot take over SwiftNIO's channels, and a publisher reconnects, to it, for its next publish.
        resources.localConnections.drain()
        let open = resources.localConnections.count
        if open > 0 { logger.debug("upgrade: waiting for the requests the supervisor serves", metadata: ["open": "\(open)"]) }
    }

    /// With a shared log: the users' changes recorded so far must be in it, since the writer's queue dies with
    /// this program (reading the workers stopped, so no new one comes).
    private func logChangesWritten() -> EventLoopFuture<ReloadRefused?> {
        let open = resources.localConnections.count
        if open > 0 {
            logger.warning(
                "upgrade: requests the supervisor serves did not finish in 5 s; their connections end",
                metadata: ["event": "upgrade-requests-cut", "open": "\(open)"])
        }
        guard let log = plane.sharedLog else { return loop.makeSucceededFuture(nil) }
        let promise = loop.makePromise(of: ReloadRefused?.self)
        promise.completeWithTask {
            do {
                try await log.changesCommitted()
                return nil
            } catch {
                return .notSteady("the event log did not take this host's users' changes (\(error))")
            }
        }
        loop.scheduleTask(in: .seconds(5)) { promise.succeed(.notSteady("the event log did not take this host's users' changes in 5 s")) }
        return promise.futureResult
    }

    /// Flushes every control channel to its socket (a ping, written last, is written once all before it are), and
    /// keeps every later write from reaching it.
    private func flushAndSealWorkers() -> EventLoopFuture<ReloadRefused?> {
        var flushed: [EventLoopFuture<Void>] = []
        for worker in plane.shards.flatMap(\.state.workers) {
            guard let channel = worker.control, let framing = worker.controlFraming else { continue }
            plane.pingsSent &+= 1
            flushed.append(channel.writeAndFlush(ControlMessage.ping(plane.pingsSent)))
            framing.seal()
            sealed.append((worker, framing))
        }
        let promise = loop.makePromise(of: ReloadRefused?.self)
        EventLoopFuture.andAllComplete(flushed, on: loop).whenComplete { _ in promise.succeed(nil) }
        loop.scheduleTask(in: .seconds(5)) {
            promise.succeed(.notSteady("a worker did not read its control channel's backlog in 5 s"))
        }
        return promise.futureResult
    }

    /// Writes the state and executes the new program; returns only if `execve` failed.
    private func execute() -> ReloadRefused {
        var unsent: [Int: [UInt8]] = [:]
        for (worker, framing) in sealed {
            unsent[worker.shard, default: []] += framing.sealedFrames()
        }
        let state = plane.upgradeState(held: accept ?? AcceptHandOver.Held(), unsent: unsent, resources: resources)
        let stateFile: CInt
        do {
            stateFile = try UpgradeStateFile.write(state)
        } catch {
            return .notSteady("the state could not be written: \(error)")
        }
        defer { Syscall.close(stateFile) }
        // What this program opened crosses over only if the state names it; not even a descriptor a library opened
        // without close-on-exec. What the parent gave the process stays as it is.
        let inherited = Set(state.inherited)
        let kept = state.descriptors.filter { !inherited.contains($0) } + [stateFile]
        let keptSet = Set(kept).union(inherited)
        for fd in Syscall.openDescriptors() where fd > 2 && !keptSet.contains(fd) { try? Syscall.setCloseOnExec(fd, true) }
        for fd in kept { try? Syscall.setCloseOnExec(fd, false) }
        defer { for fd in kept { try? Syscall.setCloseOnExec(fd, true) } }
        logger.notice(
            "upgrade: executing the installed release",
            metadata: [
                "event": "upgrade-exec", "to": "\(candidate.answer.release)", "path": "\(path)",
                "connections": "\(state.connections.count + state.waitingHandoffs.count)", "history": "\(state.history.events.count)",
            ])
        let environment =
            ProcessSpawn.currentEnvironment.filter { !$0.hasPrefix(UpgradeState.environmentKey + "=") }
            + ["\(UpgradeState.environmentKey)=\(stateFile)"]
        let errno = Syscall.execute(path: path, arguments: resources.arguments, environment: environment)
        return .executeFailed(path: path, errno)
    }

    /// Everything as it was: writes that waited go out, the workers are read again, the accept thread goes on.
    private func undo() {
        for (_, framing) in sealed { framing.unseal() }
        for channel in stoppedReading {
            try? channel.syncOptions?.setOption(ChannelOptions.autoRead, value: true)
            channel.read()
        }
        if accept != nil { resources.accept.resume() }
    }

    /// Checks `condition` every 10 ms until it holds (true) or `limit` passes (false).
    private func waitFor(within limit: TimeAmount, _ condition: @escaping () -> Bool) -> EventLoopFuture<Bool> {
        let promise = loop.makePromise(of: Bool.self)
        let deadline = NIODeadline.now() + limit
        func check() {
            if condition() { return promise.succeed(true) }
            if NIODeadline.now() >= deadline { return promise.succeed(false) }
            loop.assumeIsolated().scheduleTask(in: .milliseconds(10)) { check() }
        }
        check()
        return promise.futureResult
    }
}
