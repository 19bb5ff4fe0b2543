import Foundation
import Shared
import Testing

/// `systemctl reload` (SIGHUP, `ctl reload`) upgrades the supervisor in place: it re-executes whatever is installed
/// at its path (same pid), keeps every descriptor and its state, then replaces the workers; a broken installed binary
/// refuses the reload before anything changes.
@Suite("In-place upgrade: the supervisor re-executes itself and keeps every stream", .serialized)
struct UpgradeTests {
    /// A folder standing for `/usr/local/bin`: `sse-supervisor` and `sse-worker` as installed there, replaced the way
    /// a package manager replaces them (a new file renamed over the old).
    final class Installation: Sendable {
        let folder: URL
        var supervisor: URL { folder.appendingPathComponent("sse-supervisor") }
        var worker: URL { folder.appendingPathComponent("sse-worker") }
        var controlSocket: String { folder.appendingPathComponent("control.sock").path }
        static let build = HubProcess.buildDirectory

        init() throws {
            folder = FileManager.default.temporaryDirectory.appendingPathComponent("sse-upgrade-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: folder.path)
            try installBuild()
        }

        deinit { try? FileManager.default.removeItem(at: folder) }

        /// This build, as it is.
        func installBuild() throws {
            try install(script(exec: "sse-supervisor"), at: supervisor)
            try install(script(exec: "sse-worker"), at: worker)
        }

        /// "Another release": this build, told to call itself `release` and to speak the next control protocol
        /// (`SSE_HUB_TEST_RELEASE`, `SSE_HUB_TEST_PROTOCOL_BUMP`), through the real `execve` path.
        func installRelease(_ release: String) throws {
            let environment = "SSE_HUB_TEST_RELEASE=\(release) SSE_HUB_TEST_PROTOCOL_BUMP=1"
            try install(script(exec: "sse-supervisor", environment: environment), at: supervisor)
            try install(script(exec: "sse-worker", environment: environment), at: worker)
        }

        /// A supervisor binary of its own making (the worker stays).
        func installSupervisor(_ text: String, mode: Int = 0o755) throws {
            try install(text, at: supervisor, mode: mode)
        }

        /// A bash script that runs a binary of this build as if it were the installed file (`exec -a` keeps the path
        /// the supervisor re-executes).
        func script(exec binary: String, environment: String = "") -> String {
            let real = Self.build.appendingPathComponent(binary).path
            return "#!/bin/bash\n\(environment.isEmpty ? "" : "export \(environment)\n")exec -a \"$0\" '\(real)' \"$@\"\n"
        }

        private func install(_ text: String, at url: URL, mode: Int = 0o755) throws {
            let staged = folder.appendingPathComponent(".staged-\(UUID().uuidString)")
            try text.write(to: staged, atomically: false, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: staged.path)
            guard rename(staged.path, url.path) == 0 else { throw TimedOut(description: "rename: errno \(errno)") }
        }

        func ctl(_ arguments: [String]) async throws -> ChildProcess.Outcome {
            try await ChildProcess.run(Self.build.appendingPathComponent("sse-supervisor"), ["ctl"] + arguments + ["--socket", controlSocket])
        }

        func status() async throws -> OperatorStatus {
            let status = try await ctl(["status"])
            return try JSONDecoder().decode(OperatorStatus.self, from: Data(status.output.utf8))
        }

        func start(workers: Int = 3) async throws -> HubProcess {
            try await HubProcess.start(
                workers: workers, arguments: ["--control-socket", controlSocket, "--worker-path", worker.path], supervisor: supervisor)
        }
    }

    struct OperatorStatus: Decodable {
        struct Supervisor: Decodable {
            var release: String
            var pid: Int32
            var upgrades: Int
            var protocols: String
        }
        var supervisor: Supervisor
        var health: HealthSnapshot
    }

    @Test func anUpgradeUnderASteadyPublishStreamLosesNothingAndNoClientReconnects() async throws {
        let installed = try Installation()
        let hub = try await installed.start(workers: 3)
        defer { Task { try await hub.stop() } }
        let pid = hub.process.processIdentifier
        let users = (0..<9).map { "upgrading-\($0)" }
        #expect(Set(users.map { ShardFunction.shard(for: $0, shardCount: 3) }).count == 3)
        // One user takes a topic with no stream open, another once connected: both must survive the upgrade.
        #expect(try await hub.subscribe("upgrading-0", ["news"]).status == 200)
        let clients = users.map { ResumingClient(hub: hub, userID: $0) }
        for client in clients { try await client.start() }
        #expect(try await hub.subscribe("upgrading-1", ["news"]).status == 200)
        try await waitUntil("all connected") { try await hub.health().services.sse.totalClients == users.count }
        let before = try await installed.status()
        #expect(before.supervisor.upgrades == 0 && before.supervisor.pid == pid)
        let workersBefore = Set(before.health.workers.compactMap(\.pid))

        let publisher = SteadyPublisher(through: [hub])
        publisher.start(interval: .milliseconds(5))
        try await publisher.waitForAccepted(20)
        try installed.installRelease("9.9.9-test")
        let reload = try await installed.ctl(["reload"])
        #expect(reload.status == 0, "\(reload.output) \(reload.errors)")
        #expect(reload.output.contains("release 9.9.9-test, upgraded in place 1 times"), "\(reload.output)")
        #expect(try await hub.publish(#"{"event":"news","topic":"news","data":{"n":1}}"#).status == 200)
        try await publisher.waitForAccepted(20)
        // Again, into the same release: the second program re-executes like the first.
        let again = try await installed.ctl(["reload"])
        #expect(again.status == 0, "\(again.output) \(again.errors)")
        try await publisher.waitForAccepted(20)
        await publisher.stop()
        #expect(publisher.refused.isEmpty, "refused: \(publisher.refused)")
        let last = try #require(publisher.accepted.last)

        for client in clients {
            try await waitUntil("\(client.userID) has every event", timeout: .seconds(30)) { client.numbers(of: "seq").contains(last) }
            #expect(publisher.problems(in: client.numbers(of: "seq")) == nil, "\(client.userID)")
            #expect(client.reconnects == 0, "\(client.userID) never noticed the upgrades")
            #expect(client.events.filter { $0.event == "connected" }.count == 1)
            let expectNews = ["upgrading-0", "upgrading-1"].contains(client.userID)
            #expect(client.numbers(of: "news") == (expectNews ? [1] : []), "\(client.userID)")
        }
        #expect(hub.process.isRunning && hub.process.processIdentifier == pid, "the same process, upgraded in place")
        let after = try await installed.status()
        #expect(after.supervisor.release == "9.9.9-test")
        #expect(after.supervisor.upgrades == 2)
        #expect(after.supervisor.pid == pid)
        #expect(after.supervisor.protocols.hasPrefix("control=\(ControlFrame.version + 1) "), "\(after.supervisor.protocols)")
        #expect(after.health.status == "healthy")
        #expect(Set(after.health.workers.compactMap(\.pid)).isDisjoint(with: workersBefore), "every worker was replaced")
        #expect(after.health.workers.allSatisfy { $0.restarts == 0 })
        try await waitUntil("the topic counted on the new workers") { try await hub.stats().topics["news"] == 2 }
        for event in ["upgrade-begin", "upgrade-exec", "upgrade-done", "worker-adopted"] {
            try await waitUntil("\(event) in the journal twice") { hub.logged("event=\(event)").count >= 2 }
        }
        try await waitUntil("both reloads logged as done") { hub.logged("event=reload-done").count == 2 }
        for client in clients { await client.stop() }
    }

    /// A missing, broken or hanging binary, or one that cannot read the state, is refused before anything changes; an
    /// `execve` that fails undoes the hand-over.
    @Test func aBrokenInstalledBinaryRefusesTheReloadAndTheServerServesOn() async throws {
        let installed = try Installation()
        let hub = try await installed.start(workers: 2)
        defer { Task { try await hub.stop() } }
        let stream = try await hub.openStream("steady")
        let workers = Set(try await hub.health().workers.compactMap(\.pid))
        let real = Installation.build.appendingPathComponent("sse-supervisor").path
        let cases: [(name: String, binary: String, mode: Int, code: String, says: String)] = [
            ("not executable", installed.script(exec: "sse-supervisor"), 0o644, "upgrade.binary-unusable", "cannot be started"),
            ("exits at once", "#!/bin/sh\necho 'half-installed' >&2\nexit 1\n", 0o755, "upgrade.binary-unusable", "failed its pre-flight (exit code 1)"),
            ("hangs", "#!/bin/sh\nexec sleep 60\n", 0o755, "upgrade.binary-unusable", "did not finish its pre-flight within 10 s"),
            ("prints something else", "#!/bin/sh\necho hello\n", 0o755, "upgrade.binary-unusable", "something not sse-supervisor's"),
            (
                "cannot read the state",
                "#!/bin/bash\nif [ \"$1\" = upgrade-check ]; then echo 'the upgrade state is of format 1; this release reads formats 2 to 2'; exit 65; fi\nexec -a \"$0\" '\(real)' \"$@\"\n",
                0o755, "upgrade.state-refused", "reads formats 2 to 2"
            ),
        ]
        for (n, broken) in cases.enumerated() {
            try installed.installSupervisor(broken.binary, mode: broken.mode)
            let refused = try await installed.ctl(["reload"])
            #expect(refused.status == 2, "\(broken.name): \(refused.output) \(refused.errors)")
            #expect(refused.output.contains(#""code":"\#(broken.code)""#), "\(broken.name): \(refused.output)")
            #expect(refused.output.contains(broken.says), "\(broken.name): \(refused.output)")
            // The answer comes over the control socket, the log line through stderr: either may be read first.
            try await waitUntil("\(broken.name): the refusal logged") { hub.logged("event=reload-refused").count == n + 1 }
            #expect(hub.logged("event=upgrade-begin").isEmpty, "\(broken.name): nothing was handed over")
            #expect(Set(try await hub.health().workers.compactMap(\.pid)) == workers, "\(broken.name): no worker replaced")
            #expect(try await hub.publish(#"{"event":"still","userId":"steady","data":\#(n)}"#).status == 200)
            try await waitUntil("\(broken.name): the stream goes on") { stream.events(named: "still").count == n + 1 }
        }
        // One that passes its pre-flight and is gone when `execve` runs: the hand-over is undone, this program serves on.
        try installed.installSupervisor(
            "#!/bin/bash\nif [ \"$1\" = upgrade-check ]; then '\(real)' \"$@\"; status=$?; rm -f \"$0\"; exit $status; fi\nexec -a \"$0\" '\(real)' \"$@\"\n")
        let failed = try await installed.ctl(["reload"])
        #expect(failed.status == 2, "\(failed.output) \(failed.errors)")
        #expect(failed.output.contains(#""code":"upgrade.exec-failed""#), "\(failed.output)")
        try await waitUntil("the failed execve logged") { hub.logged("event=upgrade-failed").count == 1 }
        #expect(Set(try await hub.health().workers.compactMap(\.pid)) == workers, "no worker replaced")
        #expect(try await hub.publish(#"{"event":"still","userId":"steady","data":99}"#).status == 200)
        try await waitUntil("the stream goes on after the failed execve") { stream.events(named: "still").count == cases.count + 1 }
        let meanwhile = try await hub.openStream("arrived-after")
        #expect(try await hub.publish(#"{"event":"hello","userId":"arrived-after","data":1}"#).status == 200)
        try await meanwhile.waitForEvent("hello")

        try installed.installBuild()
        let reload = try await installed.ctl(["reload"])
        #expect(reload.status == 0, "\(reload.output) \(reload.errors)")
        #expect(try await hub.publish(#"{"event":"after","userId":"steady","data":1}"#).status == 200)
        try await stream.waitForEvent("after")
        #expect(stream.events(named: "connected").count == 1)
        #expect(try await installed.status().supervisor.upgrades == 1)
    }

    /// Reloads asked for while one runs wait their turn, across the upgrade: each `ctl reload` gets its answer.
    @Test func reloadsAskedDuringAnUpgradeRunAfterIt() async throws {
        let installed = try Installation()
        let hub = try await installed.start(workers: 2)
        defer { Task { try await hub.stop() } }
        let stream = try await hub.openStream("patient")
        async let first = installed.ctl(["reload"])
        try await waitUntil("the first reload to begin") { !hub.logged("event=upgrade-begin").isEmpty }
        async let second = installed.ctl(["reload"])
        async let third = installed.ctl(["reload", "--workers-only"])
        let answers = try await [first, second, third]
        for answer in answers { #expect(answer.status == 0, "\(answer.output) \(answer.errors)") }
        #expect(try await installed.status().supervisor.upgrades == 2, "the two upgrades ran one after the other")
        try await waitUntil("the three reloads logged as done") { hub.logged("event=reload-done").count == 3 }
        #expect(try await hub.publish(#"{"event":"after","userId":"patient","data":1}"#).status == 200)
        try await stream.waitForEvent("after")
        #expect(stream.events(named: "connected").count == 1)
    }
}
