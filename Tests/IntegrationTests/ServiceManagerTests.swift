import Foundation
import Testing

/// What the supervisor tells systemd, received on a stand-in notification socket; and worker liveness.
@Suite("Service manager notifications and worker liveness", .serialized)
struct ServiceManagerTests {
    @Test func readyStatusWatchdogAndStopping() async throws {
        let notify = try NotifySocket()
        // WatchdogSec=2s: WATCHDOG=1 every second.
        let hub = try await HubProcess.start(
            workers: 2, environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "2000000"])
        defer { Task { try await hub.stop() } }

        try await waitUntil("READY=1") { notify.count("READY=1") == 1 }
        #expect(notify.assignments.contains("STATUS=2/2 workers up, 0 clients, 0 topics"))
        try await waitUntil("two watchdog pings", timeout: .seconds(5)) { notify.count("WATCHDOG=1") >= 2 }

        let stream = try await hub.openStream("alice")
        #expect(try await hub.subscribe("alice", ["news"]).status == 200)
        try await waitUntil("the status to follow", timeout: .seconds(5)) {
            notify.assignments.contains("STATUS=2/2 workers up, 1 clients, 1 topics")
        }
        await stream.close()

        // An in-place upgrade (SIGHUP): RELOADING=1, then READY=1 once the workers are replaced too, from the same
        // pid; the upgraded program feeds the watchdog as the first did (WATCHDOG_USEC crosses the execve).
        kill(hub.process.processIdentifier, SIGHUP)
        try await waitUntil("the upgrade's reload", timeout: .seconds(30)) { !hub.logged("event=reload-done").isEmpty }
        try await waitUntil("READY=1 again") { notify.count("READY=1") == 2 }
        let sequence = notify.assignments.filter { ["READY=1", "RELOADING=1"].contains($0) }
        #expect(sequence.first == "READY=1" && sequence.last == "READY=1" && sequence.dropFirst().dropLast().allSatisfy { $0 == "RELOADING=1" })
        #expect(hub.logged("event=upgrade-done").count == 1)
        let pings = notify.count("WATCHDOG=1")
        try await waitUntil("the upgraded program to feed the watchdog", timeout: .seconds(5)) { notify.count("WATCHDOG=1") >= pings + 2 }

        try await hub.stop()
        #expect(notify.count("STOPPING=1") == 1)
        #expect(notify.count("READY=1") == 2, "READY=1 at start, and once the reload is done")
    }

    @Test func aStoppedWorkerStopsTheWatchdogAndIsReplaced() async throws {
        let notify = try NotifySocket()
        let hub = try await HubProcess.start(
            workers: 2, arguments: ["--worker-hang-timeout", "5"], environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000"])
        defer { Task { try await hub.stop() } }
        try await waitUntil("watchdog pings", timeout: .seconds(5)) { notify.count("WATCHDOG=1") >= 2 }

        let victim = try #require(try await hub.health().workers.first { $0.shard == 1 }?.pid)
        kill(victim, SIGSTOP)
        let stoppedAt = ContinuousClock.now
        // Hung after 5 s of silence: SIGKILLed (a stopped process dies of SIGKILL), reaped, restarted.
        try await waitUntil("the hung worker replaced", timeout: .seconds(15)) {
            _ = notify.messages  // read as they come: a message's time is when it was read
            let worker = try await hub.health().workers.first { $0.shard == 1 }
            return worker?.status == "up" && worker?.pid != victim
        }
        // Killed after 5 s without an answer; the last answer came at most a ping interval (1 s) before the stop.
        #expect(ContinuousClock.now - stoppedAt >= .seconds(4))
        #expect(!hub.logged("event=worker-hung", "worker=1", "pid=\(victim)").isEmpty, "\(hub.log)")
        #expect(!hub.logged("event=worker-exited", "worker=1", "pid=\(victim)", "status=signal 9").isEmpty, "\(hub.log)")

        // No WATCHDOG=1 while the worker did not answer: from 2.5 s after its last answer (at the latest 2.5 s
        // after the stop) until it was killed (at the earliest 4 s after the stop).
        let pings = notify.messages.filter { $0.text == "WATCHDOG=1" }.map(\.at)
        let silentFrom = stoppedAt + .milliseconds(2700), silentUntil = stoppedAt + .milliseconds(3900)
        #expect(pings.contains { $0 < silentFrom })
        #expect(!pings.contains { $0 > silentFrom && $0 < silentUntil }, "watchdog fed while a worker was hung")
        // And fed again once every worker answers.
        let replacedAt = ContinuousClock.now
        try await waitUntil("watchdog pings again", timeout: .seconds(5)) {
            notify.messages.contains { $0.text == "WATCHDOG=1" && $0.at > replacedAt }
        }
        try await hub.stop()
    }
}
