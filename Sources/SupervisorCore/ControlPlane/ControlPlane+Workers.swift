#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import Shared

/// Starting worker processes, and what their control channels tell the plane.
extension ControlPlane {
    /// Spawns the shard's next worker with its control channel and hand-off link; the outcome is the machine's
    /// next event (`spawned` or `spawnFailed`), applied by the caller once the current transition is done.
    func spawnWorker(shard: Int) -> ShardMachine<WorkerHandle>.Outcome {
        eventLoop.preconditionInEventLoop()
        do {
            let started = try spawnProcess(shard: shard)
            let bound = self.bound
            children.watch(started.pid) { status in bound.value.workerExited(started, status: status) }
            return shards[shard].spawned(started)
        } catch {
            logger.error("cannot start worker", metadata: ["worker": "\(shard)", "error": "\(error)", "path": "\(settings.workerPath)"])
            return shards[shard].spawnFailed(now: .now)
        }
    }

    private func spawnProcess(shard: Int) throws -> WorkerHandle {
        let (controlOurs, controlTheirs) = try Syscall.socketPair(type: .stream)
        defer { Syscall.close(controlTheirs) }
        let link: (ours: HandoffLink, theirs: HandoffLink.WorkerEnds)
        do {
            link = try HandoffLink.make()
        } catch {
            Syscall.close(controlOurs)
            throw error
        }
        let pid: pid_t
        do {
            defer { link.theirs.close() }
            pid = try ProcessSpawn.spawn(
                path: settings.workerPath, arguments: settings.workerArguments(shard),
                descriptors: [
                    (controlTheirs, WorkerLaunch.Descriptor.control), (link.theirs.socket, WorkerLaunch.Descriptor.handoffSocket),
                    (link.theirs.doorbell, WorkerLaunch.Descriptor.doorbell),
                ],
                environment: ProcessSpawn.currentEnvironment)
        } catch {
            Syscall.close(controlOurs)
            throw error
        }
        let worker = WorkerHandle(shard: shard, generation: nextGeneration(shard: shard), pid: pid, link: link.ours)
        adoptControlChannel(controlOurs, of: worker)
        return worker
    }

    func adoptControlChannel(
        _ fd: CInt, of worker: WorkerHandle, peerVersion: UInt8? = nil, unread: ByteBuffer = ByteBuffer(), unsent: ByteBuffer = ByteBuffer()
    ) {
        let backlog = ChannelOptions.Types.WriteBufferWaterMark(
            low: settings.workerBacklogBytes / 2, high: settings.workerBacklogBytes)
        let (bound, logger, loopBoundWorker) = (self.bound, self.logger, NIOLoopBound(worker, eventLoop: eventLoop))
        worker.controlDescriptor = fd
        worker.speaks(controlVersion: peerVersion)  // an upgrade's record; a new worker's hello says it
        ControlChannel.adopt(fd, group: eventLoop, backlog: backlog, peerVersion: peerVersion, unread: unread, unsent: unsent) {
            WorkerChannelHandler(plane: bound, worker: loopBoundWorker.value, logger: logger)
        }
        .whenComplete { result in
            let worker = loopBoundWorker.value
            switch result {
            case .success(let channel):
                worker.adopt(channel)
            case .failure(let error):
                logger.error("cannot adopt the worker's control socket", metadata: ["worker": "\(worker.shard)", "error": "\(error)"])
                bound.value.signal(worker, SIGKILL)
            }
        }
    }

    /// The worker's process exited and was reaped.
    func workerExited(_ worker: WorkerHandle, status: ExitStatus) {
        let metadata: Logger.Metadata = ["status": "\(status)"]
        streamsLostWith(worker)
        countRestart(of: worker, status: status)
        apply(
            shards[worker.shard].exited(generation: worker.generation, ranFor: worker.uptime, now: .now), shard: worker.shard,
            metadata: metadata)
        if !worker.released {
            // No longer one of the shard's (a stale generation): nothing holds it but this, so release it here.
            worker.release()
        }
    }

    // MARK: From a worker's control channel

    func workerSaidHello(_ worker: WorkerHandle, _ hello: WorkerHello) {
        worker.speaks(controlVersion: worker.controlFraming?.peerVersion)  // its first frame, so known by now
        apply(shards[worker.shard].helloReceived(generation: worker.generation), shard: worker.shard)
    }

    /// The worker is up: give it its users' topics and its share of the history, in one turn of the loop, so every
    /// live publish is written after the history it follows. Returns how many events were replayed.
    func replayHistory(to worker: WorkerHandle) -> Int {
        guard let channel = worker.control else { return 0 }
        for restored in subscriptions.restoreMessages(shard: worker.shard) {
            channel.write(ControlMessage.restoreTopics(restored), promise: nil)
        }
        history.trim(now: WallClock.milliseconds())
        let share = history.entries(after: 0).filter { isOnShard($0.target, worker.shard) }
        for command in share { channel.write(ControlMessage.historyEntry(command), promise: nil) }
        channel.writeAndFlush(
            ControlMessage.historyEnd(HistoryBounds(evictedThrough: history.evictedThrough, latestSequence: history.latestSequence)),
            promise: nil)
        worker.sentThrough = history.latestSequence
        // A long replay may leave more queued than the backlog bound: live events wait until it drains.
        worker.lagging = !channel.isWritable
        return share.count
    }

    func workerReported(_ worker: WorkerHandle, _ report: StatsReport) {
        // The newest worker's counts are the shard's (a retiring one's streams are moving to it).
        guard shards[worker.shard].state.newest === worker else { return }
        stats.apply(report, shard: worker.shard)
        serviceManager.shardsChanged(self)
    }

    func workerAnswered(_ worker: WorkerHandle) {
        guard worker.lastAnswer != nil else { return }
        worker.answered()
        serviceManager.workerAnswered(self)
    }

    /// A worker changed a user's topics. Kept whichever worker of the shard says so; a change from a worker a
    /// reload is retiring (a request it was still serving) also goes to its successor, which may have been given
    /// the user's topics already.
    func subscriptionsChanged(_ message: ControlMessage, from worker: WorkerHandle) {
        let shard = worker.shard
        guard self.worker(shard: shard, generation: worker.generation) != nil else { return }
        let successor = shards[shard].state.newest
        let fromRetiring = successor !== worker
        var forward: ControlMessage?
        switch message {
        case .subscribed(let change):
            subscriptions.subscribed(change, shard: shard)
            forward = .restoreTopics(change)
        case .unsubscribed(let change):
            subscriptions.unsubscribed(change, shard: shard)
            forward = .dropTopics(change)
        case .forgotten(let userID):
            // A retiring worker's grace periods are not its successor's: that one forgets on its own clock.
            guard !fromRetiring else { return }
            subscriptions.forgotten(userID, shard: shard)
        default:
            preconditionFailure("not a subscription change: \(message)")
        }
        recordTopicsChange(message)
        if fromRetiring, let forward, let channel = successor?.control { channel.writeAndFlush(forward, promise: nil) }
    }

    func migrationFinished(_ worker: WorkerHandle) {
        apply(shards[worker.shard].migrationFinished(generation: worker.generation), shard: worker.shard)
    }

    /// The control channel closed: a worker without one is useless, so make sure it is gone (it is restarted when
    /// reaped). While stopping, workers close it themselves on their way out.
    func controlClosed(_ worker: WorkerHandle) {
        guard !worker.released, !shuttingDown else { return }
        if case .replacing(let replacing) = shards[worker.shard].state, replacing.retiring === worker, replacing.phase == .stopping {
            return  // a retiring worker on its way out
        }
        signal(worker, SIGKILL)
    }

    // MARK: Liveness

    /// Pings every shard's newest worker and kills those silent past `hung` (stopped, deadlocked, spinning: their
    /// sockets stay open, so only silence tells them apart); each is then reaped and restarted like any that dies.
    ///
    /// A silent worker whose CPU time still grows from one check to the next is busy, or starved of CPU on an
    /// overloaded host (a million streams on two cores: a worker's heartbeat pass took longer than 15 s of wall time),
    /// not stopped or deadlocked: it gets `busyHung` before it counts as spinning. Killing it sooner would drop all
    /// its streams at once and make the overload worse.
    func checkLiveness() {
        let now = ContinuousClock.now
        pingsSent &+= 1
        for shard in shards.indices {
            guard let worker = shards[shard].state.newest else { continue }
            guard let last = worker.lastAnswer, now - last > settings.liveness.unanswered else {
                worker.control?.writeAndFlush(ControlMessage.ping(pingsSent), promise: nil)
                continue
            }
            let silent = now - last
            let progressing = worker.silence.observe(cpuSeconds: ProcessStat.cpuSeconds(pid: String(worker.pid)), now: now)
            switch WorkerLiveness.verdict(silent: silent, progressing: progressing, policy: settings.liveness) {
            case .hung:
                worker.lastAnswer = nil
                logger.error(
                    "worker stopped answering its liveness pings; killing it",
                    metadata: [
                        "worker": "\(shard)", "pid": "\(worker.pid)", "silent": "\(silent)", "busy": "\(progressing)",
                        "event": "worker-hung",
                    ])
                worker.killedAsHung = true
                signal(worker, SIGKILL)
                continue
            case .busy where !worker.silence.reportedBusy:
                worker.silence.reportedBusy = true
                logger.warning(
                    "worker is slow to answer its liveness pings but still uses CPU: busy or starved, not killed yet",
                    metadata: ["worker": "\(shard)", "pid": "\(worker.pid)", "silent": "\(silent)", "event": "worker-busy"])
            case .busy, .alive:
                break
            }
            worker.control?.writeAndFlush(ControlMessage.ping(pingsSent), promise: nil)
        }
    }

    /// Whether every running worker has answered within `limit` (one killed for silence counts as silent until it
    /// is reaped; a shard waiting for its restart does not count).
    func everyWorkerAnswered(within limit: Duration) -> Bool {
        let now = ContinuousClock.now
        return shards.indices.allSatisfy { shard in
            guard let worker = shards[shard].state.newest else { return true }
            return worker.lastAnswer.map { now - $0 <= limit } ?? false
        }
    }
}
