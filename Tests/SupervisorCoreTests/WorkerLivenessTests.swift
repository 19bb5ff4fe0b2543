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

/// A worker's silence: its CPU time counts as growing for a few seconds after it last grew, since a starved worker
/// runs in bursts.
@Suite struct WorkerSilenceTests {
    @Test func cpuTimeThatGrewLatelyIsProgressAndStaleGrowthIsNot() {
        var silence = WorkerLiveness.Silence()
        let start = ContinuousClock.now
        // Read outside #expect: it cannot call a mutating method.
        let first = silence.observe(cpuSeconds: 1.0, now: start)
        let grew = silence.observe(cpuSeconds: 1.02, now: start + .seconds(1))
        let recently = silence.observe(cpuSeconds: 1.02, now: start + .seconds(3))
        let stale = silence.observe(cpuSeconds: 1.02, now: start + .seconds(7))
        let unreadable = silence.observe(cpuSeconds: nil, now: start + .seconds(8))
        #expect(!first, "the first reading is a baseline, not growth")
        #expect(grew)
        #expect(recently, "no growth since, but within a few seconds")
        #expect(!stale)
        #expect(!unreadable, "an unreadable process is no progress")
    }
}
