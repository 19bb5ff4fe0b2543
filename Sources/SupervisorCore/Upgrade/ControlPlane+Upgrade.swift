import Foundation
import NIOCore
import Shared

/// This process's life across in-place upgrades: the release it runs, how often it re-executed itself, since when.
struct ProcessLife: Sendable {
    var upgrades = 0
    var startedAtMilliseconds = WallClock.milliseconds()
    var runningSinceMilliseconds = WallClock.milliseconds()

    init() {}

    init(continuing state: UpgradeState) {
        upgrades = state.upgrades + 1
        startedAtMilliseconds = state.startedAtMilliseconds
    }
}

/// What an in-place upgrade needs from beyond the control plane.
struct UpgradeResources: Sendable {
    /// The program to execute (the path this one was started as: new binaries are installed there) and its arguments.
    var executable: String
    var arguments: [String]
    var listeners: [CInt]
    var operatorSocket: CInt?
    var metricsListener: CInt?
    /// What this process's parent gave it (`UpgradeState.inherited`).
    var inherited: [CInt]
    var accept: AcceptHandOver
    var localConnections: OpenConnections
}

extension ControlPlane {
    var supervisorInfo: SupervisorInfo {
        SupervisorInfo(
            release: Release.version, pid: Syscall.processID, upgrades: life.upgrades, startedAt: life.startedAtMilliseconds,
            runningSince: life.runningSinceMilliseconds, protocols: WireProtocol.versions)
    }

    /// Takes over a worker the previous program of this process ran: its control channel (with the bytes read from
    /// it and not decoded yet), its hand-off link, its exit, and the counts it last reported.
    func adopt(_ record: UpgradeState.Worker, shard: Int, failures: Int) {
        let link = HandoffLink(socket: record.handoffSocket, doorbell: record.handoffDoorbell)
        let worker = WorkerHandle(
            shard: shard, generation: record.generation, pid: record.pid, link: link,
            startedAt: .now - .milliseconds(record.uptimeMilliseconds), handoffVersion: record.handoffVersion)
        worker.sentThrough = record.sentThrough
        adoptControlChannel(
            record.control, of: worker, peerVersion: record.controlVersion, unread: ByteBuffer(bytes: record.unread),
            unsent: ByteBuffer(bytes: record.unsent))
        let bound = self.bound
        children.watch(record.pid) { status in bound.value.workerExited(worker, status: status) }
        apply(shards[shard].adopted(worker, failures: failures), shard: shard, metadata: ["pid": "\(record.pid)"])
        stats.apply(StatsReport(clients: record.clients, topicCounts: record.topicCounts), shard: shard)
    }

    /// This program was executed by an in-place upgrade and has taken over: the reload goes on by replacing the
    /// workers, and the `ctl reload`s the previous program took get their answer when it is done.
    func finishUpgrade(from state: UpgradeState, operators: OperatorConnections) {
        logger.notice(
            "upgraded in place: this release took over every stream, worker and listener",
            metadata: [
                "event": "upgrade-done", "from": "\(state.release)", "to": "\(Release.version)", "upgrades": "\(life.upgrades)",
                "workers": "\(state.shards.filter { $0.worker != nil }.count)",
                "connections": "\(state.connections.count + state.waitingHandoffs.count)",
            ])
        let reload = reload(.workersOnly)
        for fd in state.operatorReplies { operators.answer(fd, when: reload) }
        for queued in state.queuedReloads {
            let next = self.reload(queued.workersOnly ? .workersOnly : .upgrade, answeringOperatorAt: queued.operatorReply)
            if let fd = queued.operatorReply { operators.answer(fd, when: next) }
        }
    }

    /// Why the shards cannot be handed over as they are, or nil: each must be up (its worker has the history) or
    /// down (it is started afresh), not in the middle of a start, a reload or a shutdown.
    var unsteadyShard: String? {
        for (shard, machine) in shards.enumerated() {
            switch machine.state {
            case .up, .down: continue
            default: return "worker \(shard) is \(machine.state.name.rawValue)"
            }
        }
        return nil
    }

    /// Everything the new program needs, as it is now. The caller has stopped every source of change first.
    /// `unsent`: per shard, frames its worker's channel held back while sealed, carried over as bytes.
    func upgradeState(held: AcceptHandOver.Held, unsent: [Int: [UInt8]], resources: UpgradeResources) -> UpgradeState {
        eventLoop.preconditionInEventLoop()
        history.trim(now: WallClock.milliseconds())
        let reloadsCarried = reloads.carriedOver
        let shardRecords = shards.indices.map { shard -> UpgradeState.Shard in
            var record = UpgradeState.Shard(restarts: restarts[shard], generation: lastGeneration(shard: shard), failures: 0)
            switch shards[shard].state {
            case .up(let running):
                record.failures = running.failures
                let worker = running.worker
                if let link = worker.link, let framing = worker.controlFraming, let control = worker.controlDescriptor {
                    let report = stats.report(shard: shard)
                    record.worker = UpgradeState.Worker(
                        pid: worker.pid, generation: worker.generation, control: control,
                        handoffSocket: link.socket, handoffDoorbell: link.doorbell,
                        controlVersion: framing.peerVersion ?? ControlFrame.version, handoffVersion: worker.handoffVersion,
                        unread: Data(framing.unreadBytes.readableBytesView), unsent: Data(unsent[shard] ?? []), sentThrough: worker.sentThrough,
                        uptimeMilliseconds: worker.uptime.wholeMilliseconds, clients: report.clients, topicCounts: report.topicCounts)
                }
            case .down(let down):
                record.failures = down.failures
            default:
                break
            }
            return record
        }
        return UpgradeState(
            format: UpgradeState.currentFormat, release: Release.version, upgrades: life.upgrades,
            startedAtMilliseconds: life.startedAtMilliseconds, epoch: settings.epoch, listeners: resources.listeners,
            operatorSocket: resources.operatorSocket, inherited: resources.inherited, connections: held.unrouted,
            waitingHandoffs: held.waiting.map { UpgradeState.WaitingHandoff(fd: $0.fd, shard: $0.shard, payload: Data($0.payload)) },
            operatorReplies: reloadsCarried.operatorReplies, queuedReloads: reloadsCarried.queued,
            history: UpgradeState.History(
                evictedThrough: history.evictedThrough, latestSequence: history.latestSequence,
                events: history.entries(after: 0).map(UpgradeState.Event.init)),
            topics: subscriptions.everyUser.map { UpgradeState.UserTopicsRecord(user: $0.userID, topics: $0.topics.sorted()) },
            shards: shardRecords,
            sharedLog: sharedLog == nil
                ? nil
                : UpgradeState.SharedLogPosition(
                    eventCursor: logCursor.event, changeCursor: logCursor.change),
            metricsListener: resources.metricsListener)
    }
}
