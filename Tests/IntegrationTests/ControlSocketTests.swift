import Foundation
import Testing

@Suite("The operator's control socket and sse-supervisor ctl", .serialized)
struct ControlSocketTests {
    func ctl(_ arguments: [String]) async throws -> ChildProcess.Outcome {
        try await ChildProcess.run(HubProcess.buildDirectory.appendingPathComponent("sse-supervisor"), ["ctl"] + arguments)
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

    struct StatusReport: Decodable {
        var health: HealthSnapshot
        var topics: [String: Int]
    }
}
