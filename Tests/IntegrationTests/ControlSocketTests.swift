import Foundation
import Shared
import Testing

@Suite("The operator's control socket and sse-supervisor ctl", .serialized)
struct ControlSocketTests {
    func ctl(_ arguments: [String]) async throws -> ChildProcess.Outcome {
        try await ChildProcess.run(HubProcess.buildDirectory.appendingPathComponent("sse-supervisor"), ["ctl"] + arguments)
    }

    @Test func publishStatsAndWorkersForPeopleAndScripts() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("sse-ctl-\(UUID().uuidString).sock").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let hub = try await HubProcess.start(workers: 2, arguments: ["--control-socket", path])
        defer { Task { try await hub.stop() } }
        let alice = try await hub.openStream("alice")
        let bob = try await hub.openStream("bob")
        defer { Task { for stream in [alice, bob] { await stream.close() } } }
        #expect(try await hub.subscribe("alice", ["news"]).status == 200)
        try await waitUntil("the streams counted") { try await hub.stats().totalClients == 2 }

        let toTopic = try await ctl(["publish", "--socket", path, "--topic", "news", "headline", #"{"title":"from a shell"}"#])
        #expect(toTopic.status == 0, "\(toTopic.errors)")
        #expect(toTopic.output.hasPrefix("published headline to topic news: id "), "\(toTopic.output)")
        #expect(try await alice.waitForEvent("headline").first?.data == #"{"title":"from a shell"}"#)
        let toUser = try await ctl(["publish", "--socket", path, "--user", "bob", "--json", "nudge", "42"])
        #expect(toUser.output.contains(#""success":true"#), "\(toUser.output)")
        #expect(try await bob.waitForEvent("nudge").first?.data == "42")
        #expect(alice.events(named: "nudge").isEmpty)
        let badJSON = try await ctl(["publish", "--socket", path, "x", "{not json"])
        #expect(badJSON.status != 0 && badJSON.errors.contains("must be JSON"), "\(badJSON.errors)")
        let badName = try await ctl(["publish", "--socket", path, "no spaces", "1"])
        #expect(badName.status == 1 && badName.errors.contains("400"), "\(badName.errors)")

        let stats = try await ctl(["stats", "--socket", path])
        #expect(stats.status == 0, "\(stats.errors)")
        let lines = stats.output.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
        #expect(lines.contains(["streams", "2"]) && lines.contains(["topics", "1"]) && lines.contains(["news", "1"]), "\(stats.output)")
        let statsJSON = try JSONDecoder().decode(StatsBody.self, from: Data(try await ctl(["stats", "--socket", path, "--json"]).output.utf8))
        #expect(statsJSON.totalClients == 2 && statsJSON.topics == ["news": 1])

        let workers = try await ctl(["workers", "--socket", path])
        #expect(workers.status == 0, "\(workers.errors)")
        let table = workers.output.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
        #expect(table.first == ["SHARD", "PID", "STATE", "STREAMS", "MEMORY", "UPTIME", "RESTARTS"])
        let rows = try JSONDecoder().decode([WorkerRow].self, from: Data(try await ctl(["workers", "--socket", path, "--json"]).output.utf8))
        let pids = Set(try await hub.health().workers.compactMap(\.pid))
        #expect(Set(rows.map(\.pid)) == pids && rows.allSatisfy { $0.state == "up" && ($0.memoryKiB ?? 0) > 0 && $0.restarts == 0 })
        #expect(rows.map(\.streams).reduce(0, +) == 2)
        #expect(table.count == 1 + rows.count && table.dropFirst().allSatisfy { $0.count >= 8 && $0[2] == "up" }, "\(workers.output)")
    }

    @Test func statusAndReloadThroughTheControlSocket() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("sse-ctl-\(UUID().uuidString).sock").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let hub = try await HubProcess.start(workers: 2, arguments: ["--control-socket", path])
        defer { Task { try await hub.stop() } }
        let mode = try #require(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
        #expect(mode == 0o660, "control socket mode \(String(mode, radix: 8))")

        let stream = try await hub.openStream("operator-watched")
        #expect(try await hub.subscribe("operator-watched", ["ops"]).status == 200)
        try await waitUntil("the stream and topic counted") { try await hub.stats().topics["ops"] == 1 }
        let status = try await ctl(["status", "--socket", path])
        #expect(status.status == 0, "\(status.errors)")
        let report = try JSONDecoder().decode(StatusReport.self, from: Data(status.output.utf8))
        #expect(report.health.status == "healthy")
        #expect(report.health.services.sse.totalClients == 1)
        #expect(report.topics == ["ops": 1])

        let pidsBefore = Set(try await hub.health().workers.compactMap(\.pid))
        let reload = try await ctl(["reload", "--socket", path])
        #expect(reload.status == 0, "\(reload.errors)")
        #expect(reload.output.contains("Reload done"))
        #expect(Set(try await hub.health().workers.compactMap(\.pid)).isDisjoint(with: pidsBefore))
        #expect(try await hub.publish(#"{"event":"after","userId":"operator-watched","data":1}"#).status == 200)
        try await stream.waitForEvent("after")
        #expect(stream.events(named: "connected").count == 1, "the stream moved to the new worker without a reconnect")

        let missing = try await ctl(["status", "--socket", path + ".missing"])
        #expect(missing.status != 0)
    }

    /// A reload starts workers from the installed binary; one that speaks other protocols (an upgrade that changed
    /// them) is refused before anything is touched, with the reason and exit status 2.
    @Test func aReloadIntoAWorkerOfAnotherProtocolIsRefused() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("sse-upgrade-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("control.sock").path
        let otherProtocol = folder.appendingPathComponent("speak-another-protocol")
        let hanging = folder.appendingPathComponent("hang-when-asked")
        // The "installed" worker: the real one, unless the marker file says it was replaced by another version.
        let worker = folder.appendingPathComponent("sse-worker")
        try """
            #!/bin/sh
            if [ "$1" = "--protocol-versions" ] && [ -e '\(otherProtocol.path)' ]; then echo 'control=1 handoff=99'; exit 0; fi
            if [ "$1" = "--protocol-versions" ] && [ -e '\(hanging.path)' ]; then exec sleep 60; fi
            exec '\(HubProcess.buildDirectory.appendingPathComponent("sse-worker").path)' "$@"
            """.write(to: worker, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: worker.path)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: folder.path)

        let hub = try await HubProcess.start(workers: 2, arguments: ["--control-socket", path, "--worker-path", worker.path])
        defer { Task { try await hub.stop() } }
        let stream = try await hub.openStream("upgrading")
        let pidsBefore = Set(try await hub.health().workers.compactMap(\.pid))

        #expect(FileManager.default.createFile(atPath: otherProtocol.path, contents: Data()))
        let refused = try await ctl(["reload", "--socket", path])
        #expect(refused.status == 2)
        #expect(refused.output.contains("reload refused"), "\(refused.output)")
        #expect(refused.output.contains("control=1 handoff=99"))
        #expect(hub.log.contains("event=reload-refused"))
        #expect(Set(try await hub.health().workers.compactMap(\.pid)) == pidsBefore, "no worker replaced")

        try FileManager.default.removeItem(at: otherProtocol)
        // One that never answers is given 5 s, then killed: the reload is refused, not hung.
        #expect(FileManager.default.createFile(atPath: hanging.path, contents: Data()))
        let unanswered = try await ctl(["reload", "--socket", path])
        #expect(unanswered.status == 2)
        #expect(unanswered.output.contains("speaks nothing this supervisor understands"), "\(unanswered.output)")
        #expect(Set(try await hub.health().workers.compactMap(\.pid)) == pidsBefore, "no worker replaced")

        try FileManager.default.removeItem(at: hanging)
        let reload = try await ctl(["reload", "--socket", path])
        #expect(reload.status == 0, "\(reload.output) \(reload.errors)")
        #expect(Set(try await hub.health().workers.compactMap(\.pid)).isDisjoint(with: pidsBefore))
        #expect(try await hub.publish(#"{"event":"after","userId":"upgrading","data":1}"#).status == 200)
        try await stream.waitForEvent("after")
        #expect(stream.events(named: "connected").count == 1)
    }

    struct StatusReport: Decodable {
        var health: HealthSnapshot
        var topics: [String: Int]
    }
}
