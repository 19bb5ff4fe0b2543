#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import Shared

/// One worker process as the control plane holds it: what the shard state machine moves around. Loop-owned:
/// only the control plane's event loop reads or changes it.
final class WorkerHandle: ShardWorker {
    let shard: Int
    /// Which start of the shard this is: a late event of an earlier worker never moves a later one.
    let generation: Int
    let pid: pid_t
    let startedAt: ContinuousClock.Instant
    /// Its hand-off link, until its process is gone (then the accept thread lets go of it too, and it closes).
    private(set) var link: HandoffLink?
    /// Its control channel, once adopted; closed when the process is gone.
    private(set) var control: (any Channel)?
    /// The control channel's descriptor (the channel owns it): an in-place upgrade carries it over.
    var controlDescriptor: CInt?
    /// When it last showed its event loop runs (its start, then each pong); nil once it was killed for silence.
    var lastAnswer: ContinuousClock.Instant?
    /// What its liveness checks saw since it last answered.
    var silence = WorkerLiveness.Silence()
    /// The last event sequence written to it (live, or from the history as it started or caught up).
    var sentThrough: UInt64 = 0
    /// Its control channel holds more than the backlog bound: publishes wait in the history until it drains.
    var lagging = false
    /// The worker's counters as it last reported them (`ControlPlane.workerCounted`).
    var counters = WorkerCounters()
    /// Killed for its silence (`--worker-hang-timeout`): its exit is a hang, not a crash.
    var killedAsHung = false
    /// How many connections one hand-off message to it may carry: `HandoffBatch.maximumCount` once it is known to
    /// speak `ControlFrame.batchedHandoffVersion` or later (its hello, or an in-place upgrade's record), else 1.
    private(set) var handoffBatchLimit = 1
    /// Its process has exited and was reaped.
    private(set) var released = false
    /// The hand-off protocol it speaks: this build's for a worker started here, the previous program's for one an
    /// in-place upgrade took over.
    let handoffVersion: UInt8

    init(shard: Int, generation: Int, pid: pid_t, link: HandoffLink, startedAt: ContinuousClock.Instant = .now, handoffVersion: UInt8 = Handoff.version) {
        self.shard = shard
        self.generation = generation
        self.pid = pid
        self.link = link
        self.startedAt = startedAt
        self.handoffVersion = handoffVersion
        lastAnswer = .now
    }

    /// A pong: it answers again.
    func answered() {
        lastAnswer = .now
        silence = WorkerLiveness.Silence()
    }

    /// The framing of its control channel: the version it speaks, the bytes read and not decoded yet.
    var controlFraming: ControlFrameHandler? {
        try? control?.pipeline.syncOperations.handler(type: ControlFrameHandler.self)
    }

    /// Learns the control protocol version it speaks, and so whether it reads batched hand-offs.
    func speaks(controlVersion: UInt8?) {
        guard let controlVersion else { return }
        handoffBatchLimit = controlVersion >= ControlFrame.batchedHandoffVersion ? HandoffBatch.maximumCount : 1
    }

    /// The channel was adopted; it is closed instead when the process has gone meanwhile.
    func adopt(_ channel: any Channel) {
        guard !released else { return channel.close(promise: nil) }
        control = channel
    }

    /// The process is gone: closes the control channel and lets go of the link.
    func release() {
        released = true
        control?.close(promise: nil)
        control = nil
        link = nil
    }

    var uptime: Duration { startedAt.duration(to: .now) }
}
