/// How the control plane tells a hung worker from a busy one: it pings every worker over its control channel and
/// kills the ones that stop answering (a worker that is stopped, deadlocked or spinning keeps its sockets open, so
/// only silence tells it apart; a crash is seen when it is reaped). The systemd watchdog is fed only while every
/// worker answers (`ServiceManagerLink`).
enum WorkerLiveness {
    struct Policy: Sendable {
        /// Time between pings.
        var interval: Duration = .seconds(1)
        /// A worker is not answering after missing two pings: the watchdog stops being fed.
        var unanswered: Duration = .milliseconds(2500)
        /// A worker silent this long is hung: it is killed, and restarted. Not shorter: on an overloaded host (a
        /// reconnect storm, 1,000,000 streams on two cores) a healthy worker's loop can take seconds to come round to
        /// a ping, and killing it drops all its streams at once, which makes the storm worse (`--worker-hang-timeout`).
        var hung: Duration = .seconds(15)
        /// A silent worker whose CPU time still grows (busy, or starved of CPU) is killed only past this: a loop that
        /// spins without answering for so long is broken.
        var busyHung: Duration = .seconds(60)
    }

    /// What the control plane saw of a worker since it last answered: its CPU time (a silent worker whose CPU time
    /// still grows is busy, or starved of CPU, not stopped or deadlocked), and whether it was reported busy.
    struct Silence {
        private var cpuSeconds: Double?
        private var cpuGrewAt: ContinuousClock.Instant?
        /// Logged once per silence.
        var reportedBusy = false

        /// Records the worker's CPU time now; true when it grew in the last few seconds (a starved worker runs in
        /// bursts, so not between every two checks).
        mutating func observe(cpuSeconds cpu: Double?, now: ContinuousClock.Instant) -> Bool {
            if let cpu {
                if let seen = cpuSeconds, cpu > seen { cpuGrewAt = now }
                cpuSeconds = max(cpu, cpuSeconds ?? 0)
            }
            return cpuGrewAt.map { now - $0 < .seconds(5) } ?? false
        }
    }

    enum Verdict: Equatable {
        /// Answering, or silent for less than `hung`.
        case alive
        /// Silent past `hung` but its CPU time still grows: busy or starved, spared until `busyHung`.
        case busy
        /// Stopped, deadlocked (silent past `hung`, no CPU used), or spinning (silent past `busyHung`): killed.
        case hung
    }

    /// What a worker silent for `silent` is, given whether its CPU time grew in the last few seconds.
    static func verdict(silent: Duration, progressing: Bool, policy: Policy) -> Verdict {
        if silent > policy.busyHung || (silent > policy.hung && !progressing) { return .hung }
        return silent > policy.hung ? .busy : .alive
    }
}
