import Foundation
import Testing

/// A short run of the shipped load tool against the real server, so the tool cannot rot. No timing assertions:
/// it must connect every stream and deliver every event exactly once, in order.
@Suite("sse-bench against the real server", .serialized)
struct BenchSmokeTests {
    func runBench(_ hub: HubProcess, _ arguments: [String]) async throws -> [String: Any] {
        var environment = ProcessInfo.processInfo.environment
        environment["SSE_JWT_SECRET"] = HubProcess.secret
        let outcome = try await ChildProcess.run(
            HubProcess.buildDirectory.appendingPathComponent("sse-bench"),
            ["run", "--port", String(hub.port), "--json", "--strict", "--settle", "0.2",
             "--server-pid", String(hub.process.processIdentifier)] + arguments,
            environment: environment)
        #expect(outcome.status == 0, "sse-bench failed: \(outcome.errors)\n\(outcome.output)")
        return (try? JSONSerialization.jsonObject(with: Data(outcome.output.utf8)) as? [String: Any]) ?? [:]
    }

    @Test func broadcastToAFewHundredStreamsLosesNothing() async throws {
        let hub = try await HubProcess.start(workers: 3)
        defer { Task { try await hub.stop() } }
        let report = try await runBench(hub, ["--streams", "300", "--processes", "2", "--events", "10", "--rate", "20"])
        #expect(report["established"] as? Int == 300)
        #expect(report["delivered"] as? Int == 3000)
        #expect(report["lost"] as? Int == 0)
        #expect(report["duplicated"] as? Int == 0)
        #expect(report["reordered"] as? Int == 0)
        #expect((report["serverIdleKilobytes"] as? Int ?? 0) > 0)
    }

    @Test func topicsReachOnlyTheirSubscribers() async throws {
        let hub = try await HubProcess.start(workers: 2)
        defer { Task { try await hub.stop() } }
        // 4 topics, 20 events: each stream must get exactly the 5 events of its own topic.
        let report = try await runBench(hub, ["--streams", "200", "--channels", "4", "--events", "20", "--rate", "40"])
        #expect(report["established"] as? Int == 200)
        #expect(report["expectedDeliveries"] as? Int == 1000)
        #expect(report["delivered"] as? Int == 1000)
        #expect(report["lost"] as? Int == 0)
        #expect(report["duplicated"] as? Int == 0)
    }

    @Test func eventsToSingleUsersReachOnlyThem() async throws {
        let hub = try await HubProcess.start(workers: 3)
        defer { Task { try await hub.stop() } }
        // 100 users, 200 events round-robin: each stream must get exactly its own 2.
        let report = try await runBench(hub, ["--streams", "100", "--mode", "users", "--events", "200", "--rate", "100"])
        #expect(report["established"] as? Int == 100)
        #expect(report["expectedDeliveries"] as? Int == 200)
        #expect(report["delivered"] as? Int == 200)
        #expect(report["lost"] as? Int == 0)
        #expect(report["duplicated"] as? Int == 0)
    }

    /// `--publish-connections kept` publishes as a backend's HTTP client does: the hub accepts the streams'
    /// connections and a handful for 200 publishes, not one each (the hub's own count, from `/metrics`).
    @Test func aPublisherKeepingItsConnectionsPublishesOnAFew() async throws {
        let metricsPort = try HubProcess.freePort()
        let hub = try await HubProcess.start(workers: 2, arguments: ["--metrics-listen", "127.0.0.1:\(metricsPort)"])
        defer { Task { try await hub.stop() } }
        func accepted() async throws -> Int {
            let exposition = try await TestHTTP.request(port: metricsPort, "GET", "/metrics").text
            let line = exposition.split(separator: "\n").first { $0.hasPrefix("sse_hub_connections_accepted_total ") }
            return try #require(line.flatMap { Int($0.split(separator: " ")[1]) })
        }
        let before = try await accepted()
        let report = try await runBench(
            hub, ["--streams", "100", "--mode", "users", "--events", "200", "--rate", "200", "--publish-connections", "kept"])
        #expect(report["publishConnections"] as? String == "kept")
        #expect(report["publishesSucceeded"] as? Int == 200 && report["delivered"] as? Int == 200)
        #expect(report["lost"] as? Int == 0 && report["duplicated"] as? Int == 0 && report["reordered"] as? Int == 0)
        // The streams' 100 connections (users mode subscribes to no topic), and the publisher's.
        let publishers = try await accepted() - before - 100
        #expect(publishers >= 1 && publishers <= 20, "\(publishers) connections for 200 publishes")
    }

    @Test func aReconnectStormResumesEveryStreamWithoutLosingAnEvent() async throws {
        let hub = try await HubProcess.start(workers: 2)
        defer { Task { try await hub.stop() } }
        // 300 streams drop at once after 10 of 40 events and come back with their Last-Event-ID while publishing
        // goes on: every stream must still get all 40, once each, in order.
        let report = try await runBench(
            hub, ["--streams", "300", "--processes", "2", "--events", "40", "--rate", "20", "--storm-after", "10", "--storm-rate", "1000"])
        #expect(report["delivered"] as? Int == 12_000)
        #expect(report["lost"] as? Int == 0)
        #expect(report["duplicated"] as? Int == 0)
        #expect(report["reordered"] as? Int == 0)
        let storm = report["storm"] as? [String: Any] ?? [:]
        #expect(storm["dropped"] as? Int == 300)
        #expect(storm["resumed"] as? Int == 300)
        #expect(storm["failed"] as? Int == 0)
        #expect((storm["firstLiveLatencyMilliseconds"] as? [String: Any])?["count"] as? Int == 300)
    }

    /// The scale figures: a burst after the events (every stream gets all of them), the server's CPU while idle, and
    /// the kernel's memory per connection.
    @Test func aBurstAfterTheEventsReachesEveryStreamAndTheScaleFiguresAreReported() async throws {
        let hub = try await HubProcess.start(workers: 2)
        defer { Task { try await hub.stop() } }
        let report = try await runBench(
            hub, ["--streams", "200", "--events", "2", "--rate", "20", "--burst", "10", "--idle-seconds", "1"])
        #expect(report["delivered"] as? Int == 200 * 12)
        #expect(report["lost"] as? Int == 0)
        #expect(report["duplicated"] as? Int == 0)
        #expect(report["reordered"] as? Int == 0)
        let burst = report["burst"] as? [String: Any] ?? [:]
        #expect(burst["events"] as? Int == 10)
        #expect((burst["latencyMilliseconds"] as? [String: Any])?["count"] as? Int == 2000)
        #expect((burst["milliseconds"] as? Double ?? 0) > 0)
        #expect(report["serverIdleCPUPercent"] is Double)
        #expect((report["kernel"] as? [String: Any])?["slabKilobytesPerConnection"] is Double)
        #expect(report["stoppedByMemoryGuard"] as? Bool == false)
    }
}
