import Shared
import Testing

@testable import SupervisorCore

/// Every transition of a shard, legal and illegal, through the real `ShardMachine`.
@Suite("A shard's state machine: each event moves it on, or is ignored with the reason")
struct ShardMachineTests {
    struct Worker: ShardWorker, Equatable {
        var generation: Int
    }

    typealias Machine = ShardMachine<Worker>
    let t0 = ContinuousClock.now

    /// The transition of an outcome that must have moved the machine.
    static func moved(_ outcome: Machine.Outcome, sourceLocation: SourceLocation = #_sourceLocation) throws -> Machine.Transition {
        guard case .moved(let transition) = outcome else {
            Issue.record("expected a transition, got \(outcome)", sourceLocation: sourceLocation)
            throw Unexpected()
        }
        return transition
    }

    static func ignored(_ outcome: Machine.Outcome) -> Machine.Ignored? {
        if case .ignored(let reason) = outcome { reason } else { nil }
    }

    struct Unexpected: Error {}

    /// A machine whose worker `generation` is up.
    func upMachine(generation: Int = 1) throws -> Machine {
        var machine = Machine(shard: 0)
        _ = try Self.moved(machine.start(now: t0))
        _ = try Self.moved(machine.spawned(Worker(generation: generation)))
        _ = try Self.moved(machine.helloReceived(generation: generation))
        return machine
    }

    @Test func startSpawnHelloBringsAShardUp() throws {
        var machine = Machine(shard: 3)
        #expect(machine.state.name == .idle)
        let start = try Self.moved(machine.start(now: t0))
        #expect((start.from, start.to, start.event) == (.idle, .down, .shardStarting))
        #expect(start.actions.count == 1)
        guard case .spawn = start.actions.first else { Issue.record("start must spawn"); return }

        let spawned = try Self.moved(machine.spawned(Worker(generation: 1)))
        #expect((spawned.from, spawned.to, spawned.event) == (.down, .starting, .workerStarted))
        #expect(machine.state.serving == nil, "a starting worker takes no connections")

        let hello = try Self.moved(machine.helloReceived(generation: 1))
        #expect((hello.from, hello.to, hello.event) == (.starting, .up, .workerReady))
        guard case .replayHistory(let worker) = hello.actions.first else { Issue.record("hello must replay the history"); return }
        #expect(worker.generation == 1)
        #expect(machine.state.serving?.generation == 1)
        #expect(machine.state.isServing)
    }

    @Test func aWorkerThatDiesIsRestartedAfterTheBackOffWhichGrowsWhileItKeepsDying() throws {
        var machine = try upMachine()
        let exit = try Self.moved(machine.exited(generation: 1, ranFor: .seconds(1), now: t0))
        #expect((exit.from, exit.to, exit.event) == (.up, .down, .workerExited))
        guard case .release(let released) = exit.actions[0], case .scheduleSpawn(let at) = exit.actions[1] else {
            Issue.record("an exit releases the worker and schedules a restart: \(exit.actions)")
            return
        }
        #expect(released.generation == 1)
        #expect(at == t0 + .milliseconds(100))

        // Too early: nothing happens.
        #expect(Self.ignored(machine.restartDue(now: t0)) == .notApplicable(event: "restart-due", state: .down))
        let due = try Self.moved(machine.restartDue(now: at))
        guard case .spawn = due.actions.first else { Issue.record("a due restart spawns"); return }
        _ = try Self.moved(machine.spawned(Worker(generation: 2)))
        // Dies again before saying hello: the second failure in a row waits twice as long.
        let second = try Self.moved(machine.exited(generation: 2, ranFor: .milliseconds(50), now: t0))
        guard case .scheduleSpawn(let later) = second.actions.last else { Issue.record("restart expected"); return }
        #expect(later == t0 + .milliseconds(200))
        guard case .down(let down) = machine.state else { Issue.record("down expected"); return }
        #expect(down.failures == 2)
    }

    @Test func aWorkerThatRanLongEnoughStartsTheBackOffOver() throws {
        var machine = Machine(shard: 0)
        _ = try Self.moved(machine.start(now: t0))
        _ = try Self.moved(machine.spawnFailed(now: t0))
        _ = try Self.moved(machine.spawnFailed(now: t0))
        _ = try Self.moved(machine.restartDue(now: t0 + .seconds(1)))
        _ = try Self.moved(machine.spawned(Worker(generation: 1)))
        _ = try Self.moved(machine.helloReceived(generation: 1))
        let exit = try Self.moved(machine.exited(generation: 1, ranFor: .seconds(31), now: t0))
        guard case .scheduleSpawn(let at) = exit.actions.last else { Issue.record("restart expected"); return }
        #expect(at == t0 + .milliseconds(100))
    }

    @Test func aFailedSpawnIsRetriedAfterTheBackOff() throws {
        var machine = Machine(shard: 0)
        _ = try Self.moved(machine.start(now: t0))
        let failed = try Self.moved(machine.spawnFailed(now: t0))
        #expect((failed.from, failed.to, failed.event) == (.down, .down, .spawnFailed))
        guard case .scheduleSpawn(let at) = failed.actions.first else { Issue.record("a retry is scheduled"); return }
        #expect(at == t0 + .milliseconds(100))
    }

    @Test func eventsOfAnEarlierWorkerAreIgnored() throws {
        var machine = try upMachine(generation: 2)
        #expect(Self.ignored(machine.helloReceived(generation: 1)) == .staleWorker(generation: 1))
        #expect(Self.ignored(machine.exited(generation: 1, ranFor: .seconds(1), now: t0)) == .staleWorker(generation: 1))
        #expect(Self.ignored(machine.migrationFinished(generation: 1)) == .staleWorker(generation: 1))
        #expect(Self.ignored(machine.migrationFinished(generation: 2)) == .notApplicable(event: "worker-passed-streams", state: .up))
        #expect(Self.ignored(machine.helloReceived(generation: 2)) == .notApplicable(event: "hello", state: .up), "a second hello")
        #expect(machine.state.name == .up)
        #expect(machine.state.serving?.generation == 2)
    }

    @Test func eventsThatMeanNothingInAStateAreRefused() throws {
        var machine = Machine(shard: 0)
        #expect(Self.ignored(machine.spawned(Worker(generation: 1))) == .notApplicable(event: "spawned", state: .idle))
        #expect(Self.ignored(machine.reloadAsked(now: t0)) == .notApplicable(event: "reload", state: .idle))
        #expect(Self.ignored(machine.spawnFailed(now: t0)) == .notApplicable(event: "spawn-failed", state: .idle))
        _ = try Self.moved(machine.start(now: t0))
        #expect(Self.ignored(machine.start(now: t0)) == .notApplicable(event: "start", state: .down))
        #expect(Self.ignored(machine.reloadAsked(now: t0)) == .notApplicable(event: "reload", state: .down))
        _ = try Self.moved(machine.spawned(Worker(generation: 1)))
        #expect(Self.ignored(machine.spawned(Worker(generation: 2))) == .notApplicable(event: "spawned", state: .starting))
        #expect(Self.ignored(machine.reloadAsked(now: t0)) == .notApplicable(event: "reload", state: .starting))
        #expect(Self.ignored(machine.restartDue(now: t0)) == .notApplicable(event: "restart-due", state: .starting))
        #expect(machine.state.name == .starting)
    }

    @Test func aReloadStartsASuccessorAndTheRetiringWorkerPassesItsStreamsOnceItIsUp() throws {
        var machine = try upMachine(generation: 1)
        let asked = try Self.moved(machine.reloadAsked(now: t0))
        #expect((asked.from, asked.to, asked.event) == (.up, .replacing, .workerReplacing))
        guard case .spawn = asked.actions.first else { Issue.record("a reload spawns the successor"); return }
        #expect(machine.state.isServing, "the retiring worker serves on")
        #expect(machine.state.serving == nil, "no new connection reaches the retiring worker")
        #expect(machine.state.newest == nil, "its successor is not spawned yet; the retiring worker is not the newest")
        #expect(Self.ignored(machine.reloadAsked(now: t0)) == .notApplicable(event: "reload", state: .replacing))

        _ = try Self.moved(machine.spawned(Worker(generation: 2)))
        #expect(machine.state.healthName == .starting)
        #expect(machine.state.newest?.generation == 2)
        // Migration cannot finish before it began.
        #expect(Self.ignored(machine.migrationFinished(generation: 1)) == .notApplicable(event: "worker-passed-streams", state: .replacing))

        let hello = try Self.moved(machine.helloReceived(generation: 2))
        #expect(hello.actions.count == 2)
        guard case .replayHistory(let successor) = hello.actions[0], case .beginMigration(let retiring, let to) = hello.actions[1] else {
            Issue.record("the successor gets the history, then the retiring worker passes its streams: \(hello.actions)")
            return
        }
        #expect((successor.generation, retiring.generation, to.generation) == (2, 1, 2))
        #expect(machine.state.serving?.generation == 2)

        let passed = try Self.moved(machine.migrationFinished(generation: 1))
        #expect(passed.event == .passedStreams)
        guard case .stop(let stopped) = passed.actions.first else { Issue.record("the retiring worker is stopped"); return }
        #expect(stopped.generation == 1)
        // A second "done" (or a timeout after it) changes nothing.
        #expect(Self.ignored(machine.migrationTimedOut(generation: 1)) == .notApplicable(event: "migration-timed-out", state: .replacing))

        let retired = try Self.moved(machine.exited(generation: 1, ranFor: .seconds(100), now: t0))
        #expect((retired.from, retired.to, retired.event) == (.replacing, .up, .workerRetired))
        #expect(machine.state.serving?.generation == 2)
    }

    @Test func aRetiringWorkerThatDiesBeforeItsSuccessorIsUpLeavesTheSuccessorStarting() throws {
        var machine = try upMachine(generation: 1)
        _ = try Self.moved(machine.reloadAsked(now: t0))
        _ = try Self.moved(machine.spawned(Worker(generation: 2)))
        let retired = try Self.moved(machine.exited(generation: 1, ranFor: .seconds(5), now: t0))
        #expect((retired.from, retired.to, retired.event) == (.replacing, .starting, .workerRetired))
        _ = try Self.moved(machine.helloReceived(generation: 2))
        #expect(machine.state.name == .up)
    }

    @Test func aSuccessorThatDiesIsRestartedWhileTheRetiringWorkerServesOn() throws {
        var machine = try upMachine(generation: 1)
        _ = try Self.moved(machine.reloadAsked(now: t0))
        _ = try Self.moved(machine.spawned(Worker(generation: 2)))
        let died = try Self.moved(machine.exited(generation: 2, ranFor: .milliseconds(10), now: t0))
        #expect((died.from, died.to, died.event) == (.replacing, .replacing, .workerExited))
        guard case .scheduleSpawn = died.actions.last else { Issue.record("the successor is restarted"); return }
        #expect(machine.state.isServing)
        _ = try Self.moved(machine.restartDue(now: t0 + .seconds(1)))
        _ = try Self.moved(machine.spawned(Worker(generation: 3)))
        let hello = try Self.moved(machine.helloReceived(generation: 3))
        guard case .beginMigration(let retiring, let to) = hello.actions.last else { Issue.record("migration begins"); return }
        #expect((retiring.generation, to.generation) == (1, 3))
    }

    @Test func aMigrationThatTakesTooLongStopsTheRetiringWorker() throws {
        var machine = try upMachine(generation: 1)
        _ = try Self.moved(machine.reloadAsked(now: t0))
        _ = try Self.moved(machine.spawned(Worker(generation: 2)))
        _ = try Self.moved(machine.helloReceived(generation: 2))
        let timedOut = try Self.moved(machine.migrationTimedOut(generation: 1))
        #expect(timedOut.event == .migrationTimedOut)
        guard case .stop(let stopped) = timedOut.actions.first else { Issue.record("stop expected"); return }
        #expect(stopped.generation == 1)
    }

    @Test func shutdownStopsEveryWorkerAndNothingRestarts() throws {
        var machine = try upMachine(generation: 1)
        _ = try Self.moved(machine.reloadAsked(now: t0))
        _ = try Self.moved(machine.spawned(Worker(generation: 2)))
        let shutdown = try Self.moved(machine.shutdownAsked())
        #expect((shutdown.from, shutdown.to, shutdown.event) == (.replacing, .stopping, .shardStopping))
        #expect(shutdown.actions.count == 2, "both the retiring worker and its successor are stopped")
        #expect(Self.ignored(machine.helloReceived(generation: 2)) == .notApplicable(event: "hello", state: .stopping))
        #expect(Self.ignored(machine.shutdownAsked()) == .notApplicable(event: "shutdown", state: .stopping))
        let first = try Self.moved(machine.exited(generation: 2, ranFor: .seconds(1), now: t0))
        #expect(first.to == .stopping)
        #expect(first.actions.count == 1, "no restart while stopping")
        let last = try Self.moved(machine.exited(generation: 1, ranFor: .seconds(1), now: t0))
        #expect(last.to == .stopped)
        #expect(Self.ignored(machine.restartDue(now: t0 + .seconds(60))) == .notApplicable(event: "restart-due", state: .stopped))
    }

    @Test func shutdownOfAShardWithoutWorkersIsImmediate() throws {
        var machine = Machine(shard: 0)
        _ = try Self.moved(machine.start(now: t0))
        _ = try Self.moved(machine.spawnFailed(now: t0))
        let shutdown = try Self.moved(machine.shutdownAsked())
        #expect((shutdown.to, shutdown.actions.count) == (.stopped, 0))
        #expect(Self.ignored(machine.restartDue(now: t0 + .seconds(60))) == .notApplicable(event: "restart-due", state: .stopped))
    }

    @Test func everyEventNameIsDistinct() {
        #expect(Set(ShardEvent.allCases.map(\.rawValue)).count == ShardEvent.allCases.count)
    }
}

@Suite("The restart back-off and how an exit is described")
struct RestartBackoffTests {
    @Test func doublesFromAHundredMillisecondsToTenSeconds() {
        let backoff = RestartBackoff()
        let delays = (1...10).map { backoff.delay(afterFailures: $0) }
        #expect(delays == [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000].map { Duration.milliseconds($0) })
        #expect(backoff.delay(afterFailures: 0) == .milliseconds(100))
        #expect(backoff.delay(afterFailures: Int.max) == .seconds(10), "no overflow, however many failures")
    }

    @Test func aLongRunForgivesEarlierFailures() {
        let backoff = RestartBackoff()
        #expect(backoff.failures(after: 6, ranFor: .seconds(31)) == 1)
        #expect(backoff.failures(after: 6, ranFor: .seconds(30)) == 7)
        #expect(backoff.failures(after: 0, ranFor: .zero) == 1)
    }

    @Test func exitStatusesDecodeAndDescribeThemselves() {
        #expect(ExitStatus(waitStatus: 0) == .exited(code: 0))
        #expect(ExitStatus(waitStatus: 0).isCleanExit)
        #expect(ExitStatus(waitStatus: 3 << 8) == .exited(code: 3))
        #expect(ExitStatus(waitStatus: 9) == .killed(signal: 9))
        #expect("\(ExitStatus(waitStatus: 9))" == "signal 9")
        #expect("\(ExitStatus(waitStatus: 78 << 8))" == "exit code 78")
        #expect("\(ExitStatus.unknown(.noChildProcess))".hasPrefix("unknown (waitpid: "))
        #expect(!ExitStatus.unknown(.noChildProcess).isCleanExit)
    }
}
