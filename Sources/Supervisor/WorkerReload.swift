import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import Shared
import Synchronization
import UnixSignals

/// `systemctl reload` (SIGHUP): every worker is replaced by a freshly started `sse-worker` (a new binary, if
/// one was installed), one shard at a time, and its live streams move to the new worker on the same TCP
/// connections. Clients see nothing: no reconnect, no lost, repeated or reordered event.
///
/// For one shard:
/// 1. the current worker is set aside as *retiring*: connections and publishes stop reaching it, and the
///    new worker is started (connections wait for it, publishes are kept in the history);
/// 2. the new worker says hello and gets the history (`workerReady`), so it has every event;
/// 3. the retiring worker is told to `migrate`: for each stream it writes out what it queued, then sends a
///    duplicate of the descriptor back over its hand-off socket with the user, topics, token expiry and the
///    last event sequence it wrote; a thread here forwards each to the new worker, which continues the
///    stream after that sequence from its history; users with topics and no stream follow on the control
///    channel, then `migrationDone`;
/// 4. the retiring worker is told to shut down and is reaped.
/// A retiring worker that dies midway takes its streams with it: those clients reconnect and resume, and
/// nothing else is affected.
extension WorkerPool {
    /// Replaces every worker, or refuses (before touching any) when the installed `sse-worker` does not speak
    /// this supervisor's protocols; the error says why.
    func reload() async throws(ReloadRefused) {
        let installed = await Self.protocolVersions(ofWorkerAt: settings.workerPath)
        guard installed == WireProtocol.versions else {
            let refusal = ReloadRefused(installed: installed, path: settings.workerPath)
            logger.error(
                "\(refusal)",
                metadata: [
                    "event": "reload-refused", "installed": "\(installed ?? "unknown")", "supervisor": "\(WireProtocol.versions)",
                ])
            throw refusal
        }
        logger.notice("reload: replacing every worker", metadata: ["event": "reload-begin"])
        SystemdNotifier.notify(.reloading)
        for shard in 0..<settings.shardCount {
            await replace(shard: shard)
        }
        SystemdNotifier.notify(.ready)
        logger.notice("reload done", metadata: ["event": "reload-done"])
    }

    private func replace(shard: Int) async {
        var log = logger
        log[metadataKey: "worker"] = "\(shard)"
        let retiring: Retiring? = state.withLock { state in
            var slot = state.slots[shard]
            guard !state.shuttingDown, slot.retiring == nil, slot.status == .up, let pid = slot.pid, let control = slot.control,
                let handoff = slot.handoff
            else { return nil }
            let retiring = Retiring(generation: slot.generation, pid: pid, control: control, handoff: handoff)
            slot.retiring = retiring
            slot.status = .starting
            slot.pid = nil
            slot.control = nil
            slot.handoff = nil
            state.slots[shard] = slot
            return retiring
        }
        guard let retiring else {
            log.warning("reload skipped a worker that is not up (it is being restarted anyway)")
            return
        }
        start(shard: shard)
        let newWorkerUp = await waitUntil(.seconds(30)) { $0.slots[shard].status == .up }
        if !newWorkerUp {
            log.error("the new worker did not come up; the retiring one passes its streams on when it does")
            _ = await waitUntil(.seconds(300)) { $0.slots[shard].status == .up || $0.shuttingDown }
        }
        forwardMigratedStreams(from: retiring.handoff, shard: shard, logger: log)
        retiring.control.writeAndFlush(ControlMessage.migrate, promise: nil)
        let passed = await waitUntil(.seconds(30)) { state in
            guard let current = state.slots[shard].retiring, current.generation == retiring.generation else { return true }
            return current.passedEverything
        }
        if !passed { log.warning("the retiring worker did not finish passing its streams on in time") }
        retiring.control.writeAndFlush(ControlMessage.shutdown, promise: nil)
        let exited = await waitUntil(.seconds(10)) { $0.slots[shard].retiring?.generation != retiring.generation }
        if !exited {
            log.warning("the retiring worker did not exit; killing it", metadata: ["pid": "\(retiring.pid)"])
            try? Syscall.kill(retiring.pid, SIGKILL)
            _ = await waitUntil(.seconds(10)) { $0.slots[shard].retiring?.generation != retiring.generation }
        }
        log.info("worker replaced", metadata: ["event": "worker-replaced", "retired-pid": "\(retiring.pid)"])
    }

    /// What `sse-worker --protocol-versions` prints for the binary at `path`; nil if it cannot be run or says nothing.
    /// On a thread of its own: it spawns, reads and waits.
    static func protocolVersions(ofWorkerAt path: String) async -> String? {
        await withCheckedContinuation { continuation in
            Thread { continuation.resume(returning: protocolVersionsBlocking(ofWorkerAt: path)) }.start()
        }
    }

    private static func protocolVersionsBlocking(ofWorkerAt path: String) -> String? {
        guard let output = try? Syscall.pipe() else { return nil }
        defer { Syscall.close(output.read) }
        let pid: pid_t
        do {
            defer { Syscall.close(output.write) }
            pid = try ProcessSpawn.spawn(
                path: path, arguments: [WireProtocol.askArgument], descriptors: [(output.write, 1)],
                environment: ProcessSpawn.currentEnvironment)
        } catch {
            return nil
        }
        // A binary that does not answer within 5 s (it is not an sse-worker, or hangs) is killed: a reload must not hang.
        let reaped = Mutex(false)
        DispatchQueue.global().asyncAfter(deadline: .now() + 5) {
            reaped.withLock { reaped in if !reaped { try? Syscall.kill(pid, SIGKILL) } }
        }
        var text: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 256)
        while text.count < 4096, let count = try? chunk.withUnsafeMutableBytes({ try Syscall.read(output.read, into: $0) }), count > 0 {
            text += chunk[..<count]
        }
        let status = try? Syscall.waitForExit(pid)
        reaped.withLock { $0 = true }
        guard status == 0 else { return nil }
        let line = String(decoding: text, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return line.isEmpty ? nil : line
    }

    /// Polls the state until `condition` holds or `timeout` passes; true when it held.
    private func waitUntil(_ timeout: Duration, _ condition: (State) -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while !state.withLock({ condition($0) }) {
            guard ContinuousClock.now < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return true
    }

    /// Reads the streams a retiring worker sends back over its hand-off socket and hands each to the shard's
    /// current worker. Owns the link from now on, and closes it when the retiring worker has gone (end of
    /// stream): not before, since a worker takes its doorbell's end as the signal to stop.
    private func forwardMigratedStreams(from link: HandoffLink, shard: Int, logger: Logger) {
        let thread = Thread {
            let socket = link.socket
            try? Syscall.setNonBlocking(socket, false)
            let buffers = DescriptorPassing.ReceiveBuffers()
            var moved = 0
            while true {
                let received: DescriptorPassing.Received?
                do {
                    received = try DescriptorPassing.receive(from: socket, using: buffers)
                } catch {
                    logger.error("bad message from a retiring worker; dropped", metadata: ["error": "\(error)"])
                    continue
                }
                guard let received else { break }
                guard let fd = received.descriptor else { continue }
                defer { Syscall.close(fd) }
                guard let handoff = try? Handoff(decoding: received.payload), handoff.route == .migrated else {
                    logger.error("a retiring worker sent something other than a stream; closed")
                    continue
                }
                if self.handOffWaiting(fd, received.payload, shard: shard) {
                    moved += 1
                } else {
                    logger.warning("a migrating stream found no worker; its client reconnects", metadata: ["user": "\(handoff.userID)"])
                }
            }
            link.close()
            logger.info("streams moved to the new worker", metadata: ["event": "connection-migrated", "streams": "\(moved)"])
        }
        thread.name = "sse-migrate-\(shard)"
        thread.start()
    }

    /// `handOff`, retried for a few seconds while the worker is busy or starting. Blocks: for the forwarding thread.
    private func handOffWaiting(_ fd: CInt, _ payload: [UInt8], shard: Int) -> Bool {
        var retry = HandoffRetry(for: .seconds(5))
        while handOff(fd, payload, shard: shard) != .sent {
            guard let pause = retry.nextPause() else { return false }
            usleep(useconds_t(pause / .microseconds(1)))
        }
        return true
    }

    func retiringWorkerPassedEverything(shard: Int, generation: Int) {
        state.withLock { state in
            if state.slots[shard].retiring?.generation == generation { state.slots[shard].retiring?.passedEverything = true }
        }
    }

    /// A worker of an older generation exited: a retired one (expected), or a stale one. True when handled here.
    func retiredWorkerExited(shard: Int, generation: Int, pid: pid_t) -> Bool {
        let (isCurrent, retired) = state.withLock { state -> (Bool, Retiring?) in
            guard state.slots[shard].generation != generation else { return (true, nil) }
            guard let retiring = state.slots[shard].retiring, retiring.generation == generation else { return (false, nil) }
            state.slots[shard].retiring = nil
            return (false, retiring)
        }
        guard !isCurrent else { return false }
        retired?.control.close(promise: nil)
        logger.info("retired worker exited", metadata: ["worker": "\(shard)", "pid": "\(pid)", "event": "worker-retired"])
        return true
    }
}

/// A reload refused because the installed worker would not understand this supervisor.
struct ReloadRefused: Error, CustomStringConvertible {
    let installed: String?
    let path: String

    var description: String {
        "reload refused: the installed sse-worker (\(path)) speaks \(installed ?? "nothing this supervisor understands"), this "
            + "supervisor \(WireProtocol.versions); the running workers stay. Restart the service to upgrade (the socket "
            + "keeps waiting clients; streams reconnect and resume)"
    }
}

/// Runs a reload for every SIGHUP (`systemctl reload`), one at a time.
struct ReloadOnHangup: Service {
    let reloads: ReloadCoordinator

    func run() async throws {
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        await cancelWhenGracefulShutdown {
            for await _ in hangups {
                try? await reloads.reload()  // a refusal is logged where it is decided
            }
        }
    }
}
