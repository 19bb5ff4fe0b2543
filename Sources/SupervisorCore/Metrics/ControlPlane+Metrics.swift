import Foundation
import NIOCore
import NIOHTTP1
import Shared

/// The plane's side of the host's metrics: what workers counted reaches the host's totals, and every second (with
/// `--metrics-listen`) the gauges are sampled and the status page's streams get a snapshot.
extension ControlPlane {
    /// A worker's counters since it started: the difference from its last report is the host's.
    func workerCounted(_ worker: WorkerHandle, _ counters: WorkerCounters) {
        let last = worker.counters
        worker.counters = counters
        func delta(_ now: UInt64, _ before: UInt64) -> Int { now >= before ? Int(clamping: now - before) : 0 }
        metrics.eventsDelivered.increment(by: delta(counters.eventsDelivered, last.eventsDelivered))
        metrics.bytesWritten.increment(by: delta(counters.bytesWritten, last.bytesWritten))
        metrics.slowConsumersDropped.increment(by: delta(counters.slowConsumersDropped, last.slowConsumersDropped))
        metrics.resumes.increment(by: delta(counters.resumes, last.resumes))
        metrics.resets.increment(by: delta(counters.resets, last.resets))
    }

    /// Why a worker that was serving exited, for `sse_hub_worker_restarts_total`.
    func countRestart(of worker: WorkerHandle, status: ExitStatus) {
        guard !shuttingDown, shards[worker.shard].state.newest === worker else { return }
        let cause: HostMetrics.RestartCause =
            if worker.killedAsHung { .hung } else if case .exited = status { .exited } else { .crashed }
        metrics.workerRestarted(cause)
    }

    /// Samples the gauges and sends the status streams a snapshot, every second until shutdown (only with a metrics
    /// listener: reading every worker's memory is for someone who looks).
    func startMetricsSampling() {
        eventLoop.preconditionInEventLoop()
        let bound = self.bound
        eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: .seconds(1)) { task in
            let plane = bound.value
            guard !plane.shuttingDown else {
                plane.endStatusStreams()
                return task.cancel()
            }
            plane.sampleMetrics()
        }
    }

    private func sampleMetrics() {
        let snapshot = statusSnapshot()
        metrics.streamsOpen.record(stats.totalClients)
        metrics.workersUp.record(shards.filter { $0.state.isServing }.count)
        metrics.historyEvents.record(history.count)
        for shard in shards.indices { metrics.workerStreams(shard, stats.clientsByShard[shard]) }
        for worker in snapshot.workers where worker.state != "retiring" {
            if let kilobytes = worker.memoryKiB { metrics.workerMemory(worker.shard, bytes: kilobytes * 1024) }
        }
        if let logStatus, let head = logStatus.head { metrics.logLag.record(head > logCursor.event ? Int(head - logCursor.event) : 0) }
        guard !statusStreams.isEmpty else { return }
        let frame = Self.statusFrame(snapshot)
        for channel in statusStreams.values { channel.writeAndFlush(HTTPServerResponsePart.body(.byteBuffer(frame)), promise: nil) }
    }

    func statusSnapshot() -> StatusSnapshot {
        let totals = StatusSnapshot.Totals(
            connectionsAccepted: metrics.connectionsAccepted.total, connectionsRefused: metrics.refusedTotal,
            eventsDelivered: metrics.eventsDelivered.total, bytesWritten: metrics.bytesWritten.total,
            slowConsumersDropped: metrics.slowConsumersDropped.total, publishes: metrics.publishesAccepted,
            resumes: metrics.resumes.total, resets: metrics.resets.total, reloads: metrics.reloads.total, upgrades: life.upgrades,
            workerRestarts: metrics.workerRestarts)
        let now = WallClock.milliseconds()
        return StatusSnapshot(
            time: now, host: logStatus?.hostID ?? ProcessInfo.processInfo.hostName, uptimeSeconds: (now - life.startedAtMilliseconds) / 1000,
            streams: stats.totalClients, workers: workerRows, totals: totals, historyEvents: history.count)
    }

    /// One `snapshot` event of the status stream.
    static func statusFrame(_ snapshot: StatusSnapshot) -> ByteBuffer {
        let json = (try? JSONEncoder().encode(snapshot)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        return SSEWireFormat.event("snapshot", data: json)
    }

    /// A status page's stream: it gets a snapshot at once, then every second, until it closes.
    func addStatusStream(_ channel: any Channel) {
        eventLoop.preconditionInEventLoop()
        let key = ObjectIdentifier(channel)
        statusStreams[key] = channel
        channel.writeAndFlush(HTTPServerResponsePart.body(.byteBuffer(Self.statusFrame(statusSnapshot()))), promise: nil)
        let bound = self.bound
        channel.closeFuture.hop(to: eventLoop).whenComplete { _ in bound.value.statusStreams[key] = nil }
    }

    private func endStatusStreams() {
        for channel in statusStreams.values { channel.close(promise: nil) }
        statusStreams = [:]
    }
}
