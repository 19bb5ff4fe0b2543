import Testing

@testable import SupervisorCore

/// When a silent worker is killed: a stopped or deadlocked one (no CPU used) after `hung`; a busy or CPU-starved one
/// (its CPU time still grows) only after `busyHung`, so an overloaded host does not lose a healthy worker's streams.
@Suite struct WorkerLivenessVerdictTests {
    let policy = WorkerLiveness.Policy(interval: .seconds(1), unanswered: .milliseconds(2500), hung: .seconds(15), busyHung: .seconds(60))

    @Test func aSilentWorkerThatUsesNoCPUIsHungAfterTheTimeout() {
        #expect(WorkerLiveness.verdict(silent: .seconds(14), progressing: false, policy: policy) == .alive)
        #expect(WorkerLiveness.verdict(silent: .seconds(16), progressing: false, policy: policy) == .hung)
    }

    @Test func aSilentWorkerThatStillUsesCPUIsSparedUntilTheBusyBound() {
        #expect(WorkerLiveness.verdict(silent: .seconds(16), progressing: true, policy: policy) == .busy)
        #expect(WorkerLiveness.verdict(silent: .seconds(59), progressing: true, policy: policy) == .busy)
        #expect(WorkerLiveness.verdict(silent: .seconds(61), progressing: true, policy: policy) == .hung)
        // Once its CPU time stops growing it is hung at once.
        #expect(WorkerLiveness.verdict(silent: .seconds(30), progressing: false, policy: policy) == .hung)
    }
}
