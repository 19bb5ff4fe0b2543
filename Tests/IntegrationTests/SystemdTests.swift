import Foundation
import Shared
import Testing

/// sse-hub installed with `scripts/install.sh` and run by a real systemd 252 (PID 1 in fresh namespaces):
/// socket activation, the STATUS= line, journal fields, the liveness watchdog, stop.
@Suite(
    "systemd: the installed units under a real systemd", .serialized,
    .enabled(if: SystemdSandbox.isAvailable, "skipped: cannot boot systemd in namespaces here (needs root, unshare, a writable cgroup)"))
struct SystemdTests {
    static let secret = "systemd-test-secret-0123456789abcdef0123456789"

    /// `scripts/install.sh --destdir` with the test build's binaries and a known secret.
    static func stage() throws -> URL {
        let stage = FileManager.default.temporaryDirectory.appendingPathComponent("sse-hub-stage-\(UUID().uuidString)")
        let secretFile = stage.appendingPathComponent("etc/sse-hub/jwt-secret")
        try FileManager.default.createDirectory(at: secretFile.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(secret.utf8).write(to: secretFile)
        let installer = URL(fileURLWithPath: SystemdSandbox.script).deletingLastPathComponent().appendingPathComponent("install.sh")
        // systemd 252 booted in these namespaces leaves $CREDENTIALS_DIRECTORY empty (LoadCredential= and
        // SetCredential= alike), so here the secret comes from the environment; the real unit loads it as a credential.
        let dropIn = stage.appendingPathComponent("etc/systemd/system/sse-hub.service.d/sandbox.conf")
        try FileManager.default.createDirectory(at: dropIn.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data("[Service]\nEnvironment=SSE_JWT_SECRET=\(secret)\n".utf8).write(to: dropIn)
        let installed = try SystemdSandbox.run([
            installer.path, "--destdir", stage.path, "--binaries", HubProcess.buildDirectory.path,
        ])
        guard installed.status == 0 else { throw TimedOut(description: "install.sh failed: \(installed.text)") }
        return stage
    }

    @Test func socketActivationStatusJournalWatchdogAndStop() async throws {
        let stage = try Self.stage()
        defer { try? FileManager.default.removeItem(at: stage) }
        let sandbox = try SystemdSandbox.start(name: "systemd-tests", stage: stage)
        defer { sandbox.stop() }
        func shell(_ command: String) throws -> SystemdSandbox.Output { try sandbox.run(["sh", "-c", command]) }
        /// sse-hub's journal entries with every one of `fields` (`SSE_EVENT=worker-started`), one JSON object each.
        func entries(_ fields: String...) throws -> [Substring] {
            try sandbox.run(["journalctl", "-u", "sse-hub", "-o", "json", "-q", "--no-pager"] + fields).text
                .split(separator: "\n").filter { $0.hasPrefix("{") }
        }

        // What install.sh does on a real host after copying: the user, /run/sse-hub.
        #expect(try sandbox.run(["systemd-sysusers", "/etc/sysusers.d/sse-hub.conf"]).status == 0)
        #expect(try sandbox.run(["systemd-tmpfiles", "--create", "/etc/tmpfiles.d/sse-hub.conf"]).status == 0)
        let verify = try sandbox.run([
            "systemd-analyze", "verify", "/etc/systemd/system/sse-hub.service", "/etc/systemd/system/sse-hub.socket",
            "/etc/systemd/system/sse-hub-metrics.socket",
        ])
        #expect(verify.status == 0 && verify.text.isEmpty, "systemd-analyze verify: \(verify.text)")

        // Socket activation: nothing runs until the first connection.
        #expect(try sandbox.run(["systemctl", "start", "sse-hub.socket", "sse-hub-metrics.socket"]).status == 0)
        #expect(try sandbox.run(["systemctl", "is-active", "sse-hub.service"]).text.hasPrefix("inactive"))
        let control = try shell("stat -c '%U %G %a' /run/sse-hub/control").text
        #expect(control.hasPrefix("root root 660"), "control socket: \(control)")

        let token = try await TokenSigner(secret: Self.secret).sign(userID: "alice")
        let stream = try sandbox.launch([
            "curl", "-sSN", "--max-time", "120", "-H", "Accept: text/event-stream",
            "http://127.0.0.1:8080/api/sse/stream?token=\(token)",
        ])
        try await waitUntil("the first connection to start the service and get its stream", timeout: .seconds(20)) {
            stream.text.contains("event: connected")
        }
        // active once READY=1 is in (every worker up), which may come just after the first stream.
        try await waitUntil("the service to be active", timeout: .seconds(10)) {
            try sandbox.run(["systemctl", "is-active", "sse-hub.service"]).text.hasPrefix("active")
        }
        try await waitUntil("systemctl status to show the STATUS= line", timeout: .seconds(10)) {
            try sandbox.run(["systemctl", "status", "--no-pager", "sse-hub.service"]).text
                .contains(#"Status: "2/2 workers up, 1 clients, 0 topics""#)
        }

        // The metrics on their own socket (named `metrics`), apart from the public port.
        try await waitUntil("the stream counted on the metrics socket", timeout: .seconds(10)) {
            try shell("curl -s http://127.0.0.1:9464/metrics").text.contains("sse_hub_streams_open 1.0")
        }
        #expect(try shell("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/metrics").text == "404")

        // The operator's API on the control socket systemd passed.
        let ctlStatus = try sandbox.run(["/usr/local/bin/sse-supervisor", "ctl", "status"])
        #expect(ctlStatus.status == 0 && ctlStatus.text.contains(#""totalClients":1"#), "ctl status: \(ctlStatus.text)")

        // The journal, by field.
        try await waitUntil("worker-started entries in the journal", timeout: .seconds(10)) {
            try entries("SSE_EVENT=worker-started").count == 2
        }
        let workerOne = try sandbox.run([
            "journalctl", "-u", "sse-hub", "SSE_WORKER=1", "SYSLOG_IDENTIFIER=sse-worker", "SSE_EVENT=worker-serving", "-o", "cat", "--no-pager",
        ])
        #expect(workerOne.text.split(separator: "\n").count == 1, "worker 1's own serving entry: \(workerOne.text)")
        let everything = try sandbox.run(["journalctl", "-o", "export", "--no-pager"]).text
        #expect(!everything.contains(token), "a token reached the journal")

        // Workers run as sse-hub, the supervisor as root.
        let mainPID = try sandbox.run(["systemctl", "show", "-p", "MainPID", "--value", "sse-hub.service"]).text
            .trimmingCharacters(in: .whitespacesAndNewlines)
        func workers() throws -> [String] {
            try shell("cat /sys/fs/cgroup/system.slice/sse-hub.service/cgroup.procs").text.split(separator: "\n").map(String.init)
                .filter { $0 != mainPID }
        }
        let users = try shell("ps -o user= -p \(try workers().joined(separator: ","))").text.split(separator: "\n")
        #expect(users.count == 2 && users.allSatisfy { $0.trimmingCharacters(in: .whitespaces) == "sse-hub" }, "\(users)")
        #expect(try shell("ps -o user= -p \(mainPID)").text.trimmingCharacters(in: .whitespacesAndNewlines) == "root")

        // A stopped worker stops answering its pings: it is killed and replaced; the supervisor lives on.
        // The victim is the worker that does not serve alice, whose stream must live on to the reload.
        struct Status: Decodable {
            struct Health: Decodable { var workers: [Worker] }
            struct Worker: Decodable { var shard: Int; var pid: Int32? }
            var health: Health
        }
        let statusText = try sandbox.run(["/usr/local/bin/sse-supervisor", "ctl", "status"]).text
        let status = try JSONDecoder().decode(Status.self, from: Data(statusText.drop { $0 != "{" }.utf8))
        let aliceShard = ShardFunction.shard(for: "alice", shardCount: 2)
        let victim = String(try #require(status.health.workers.first { $0.shard != aliceShard }?.pid))
        #expect(try sandbox.run(["kill", "-STOP", victim]).status == 0)
        try await waitUntil("the stopped worker to be replaced", timeout: .seconds(40)) {
            let current = try workers()
            return current.count == 2 && !current.contains(victim)
        }
        #expect(try entries("SSE_EVENT=worker-hung", "SSE_PID=\(victim)").count == 1)
        #expect(
            try sandbox.run(["systemctl", "show", "-p", "MainPID", "--value", "sse-hub.service"]).text
                .trimmingCharacters(in: .whitespacesAndNewlines) == mainPID, "the watchdog did not restart the service")

        // systemctl reload replaces every worker; alice's stream stays open on the same connection and goes on.
        let beforeReload = Set(try workers())
        #expect(try sandbox.run(["systemctl", "reload", "sse-hub.service"], timeout: 40).status == 0)
        // systemd 252 may return from reload before READY=1: wait for the supervisor's own word.
        try await waitUntil("the reload to finish", timeout: .seconds(30)) {
            try !entries("SSE_EVENT=reload-done").isEmpty
        }
        let afterReload = Set(try workers())
        #expect(afterReload.count == 2 && afterReload.isDisjoint(with: beforeReload), "workers before \(beforeReload), after \(afterReload)")
        #expect(stream.process.isRunning, "the stream survived the reload")
        // The reload upgraded the supervisor in place: the same MainPID, re-executed once, still root with its
        // capabilities (the new workers run as sse-hub again), in the journal.
        #expect(
            try sandbox.run(["systemctl", "show", "-p", "MainPID", "--value", "sse-hub.service"]).text
                .trimmingCharacters(in: .whitespacesAndNewlines) == mainPID, "the supervisor kept its pid")
        #expect(try entries("SSE_EVENT=upgrade-done").count == 1)
        let upgraded = try sandbox.run(["/usr/local/bin/sse-supervisor", "ctl", "status"]).text
        #expect(upgraded.contains(#""upgrades":1"#), "ctl status after the upgrade: \(upgraded)")
        let newUsers = try shell("ps -o user= -p \(afterReload.joined(separator: ","))").text.split(separator: "\n")
        #expect(newUsers.count == 2 && newUsers.allSatisfy { $0.trimmingCharacters(in: .whitespaces) == "sse-hub" }, "\(newUsers)")
        let publisher = try await TokenSigner(secret: Self.secret).sign(userID: "backend", publisher: true)
        let published = try sandbox.run([
            "curl", "-sS", "-H", "Authorization: Bearer \(publisher)", "-H", "Content-Type: application/json",
            "-d", #"{"event":"after-reload","userId":"alice","data":1}"#, "http://127.0.0.1:8080/api/sse/publish",
        ])
        #expect(published.text.contains(#""success":true"#), "publish: \(published.text)")
        try await waitUntil("the event after the reload on the same stream", timeout: .seconds(10)) {
            stream.text.contains("event: after-reload")
        }
        #expect(stream.text.components(separatedBy: "event: connected").count - 1 == 1, "one connection all along")
        #expect(try !entries("SSE_EVENT=connection-migrated").isEmpty)

        // Stop ends every process, and the stream ends cleanly.
        #expect(try sandbox.run(["systemctl", "stop", "sse-hub.service"], timeout: 40).status == 0)
        try await waitUntil("the stream to end", timeout: .seconds(10)) { !stream.process.isRunning }
        #expect(stream.process.terminationStatus == 0, "curl: \(stream.text)")
        #expect(try sandbox.run(["systemctl", "is-active", "sse-hub.service"]).text.hasPrefix("inactive"))
        let left = try shell("ps -eo comm= | grep '^sse-' || true").text
        #expect(left.isEmpty, "processes left: \(left)")
        #expect(try entries("SSE_EVENT=shutdown-done").count == 1)
    }
}
