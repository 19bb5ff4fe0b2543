import Foundation
import Shared
import Testing

@Suite("Nothing lost: ids, Last-Event-ID replay, slow consumers, token expiry", .serialized)
struct ResumeTests {
    @Test func aReconnectWithLastEventIDGetsExactlyWhatWasMissedThenLiveEvents() async throws {
        let hub = try await HubProcess.start(workers: 3)
        defer { Task { try await hub.stop() } }
        #expect(try await hub.subscribe("rita", ["news"]).status == 200)
        let first = try await hub.openStream("rita")
        #expect(String(decoding: first.connection.snapshot.body, as: UTF8.self).hasPrefix("retry: 3000\n"))
        #expect(try await hub.publish(#"{"event":"tick","data":{"n":0}}"#).status == 200)
        let seen = try await first.waitForEvent("tick")
        let lastID = try #require(seen.last?.id)
        await first.close()
        try await waitUntil("rita disconnected") { try await hub.stats().totalClients == 0 }

        // While rita is away: broadcasts, her topic, her own events, and things she must not get.
        for n in 1...3 { #expect(try await hub.publish(#"{"event":"tick","data":{"n":\#(n)}}"#).status == 200) }
        #expect(try await hub.publish(#"{"event":"tick","topic":"news","data":{"n":4}}"#).status == 200)
        #expect(try await hub.publish(#"{"event":"tick","topic":"sports","data":{"n":-1}}"#).status == 200)
        #expect(try await hub.publish(#"{"event":"tick","userId":"rita","data":{"n":5}}"#).status == 200)
        #expect(try await hub.publish(#"{"event":"tick","userId":"someone-else","data":{"n":-2}}"#).status == 200)

        let resumed = try await SSETestStream.open(
            port: hub.port, target: "/api/sse/stream?token=\(try await hub.token("rita"))", headers: ["Last-Event-ID": lastID])
        try await resumed.waitForEvent("tick", count: 5)
        #expect(try await hub.publish(#"{"event":"tick","data":{"n":6}}"#).status == 200)
        let ticks = try await resumed.waitForEvent("tick", count: 6)
        #expect(ticks.map(\.data) == (1...6).map { #"{"n":\#($0)}"# })
        #expect(resumed.events.first?.event == "connected")
        #expect(resumed.events(named: "reset").isEmpty)
        // Ids ascend within one epoch.
        let ids = ticks.compactMap { $0.id.flatMap(EventID.init) }
        #expect(ids.count == 6 && Set(ids.map(\.epoch)).count == 1)
        #expect(ids.map(\.sequence) == ids.map(\.sequence).sorted())

        // The query parameter works too (for polyfills and first connections).
        let viaQuery = try await SSETestStream.open(
            port: hub.port, target: "/api/sse/stream?token=\(try await hub.token("rita"))&lastEventId=\(lastID)")
        #expect(try await viaQuery.waitForEvent("tick", count: 6).map(\.data) == (1...6).map { #"{"n":\#($0)}"# })
    }

    @Test func anIDOlderThanTheHistoryOrFromAnotherEpochGetsResetFirst() async throws {
        let hub = try await HubProcess.start(workers: 2, arguments: ["--history-size", "3"])
        defer { Task { try await hub.stop() } }
        let stream = try await hub.openStream("sam")
        #expect(try await hub.publish(#"{"event":"tick","data":{"n":0}}"#).status == 200)
        let firstID = try #require(try await stream.waitForEvent("tick").first?.id)
        for n in 1...5 { #expect(try await hub.publish(#"{"event":"tick","data":{"n":\#(n)}}"#).status == 200) }
        try await stream.waitForEvent("tick", count: 6)

        for staleID in [firstID, "1-1", "not-an-id"] {
            let resumed = try await SSETestStream.open(
                port: hub.port, target: "/api/sse/stream?token=\(try await hub.token("sam"))", headers: ["Last-Event-ID": staleID])
            let reset = try #require(try await resumed.waitForEvent("reset").first)
            #expect(reset.data == #"{"lastEventId":"\#(staleID)","reason":"history-gap"}"#)
            #expect(resumed.events.map(\.event) == ["connected", "reset"])
            #expect(try await hub.publish(#"{"event":"live","data":1}"#).status == 200)
            try await resumed.waitForEvent("live")
        }
    }

    @Test func killingAWorkerUnderLoadLosesNothing() async throws {
        let hub = try await HubProcess.start(workers: 3)
        defer { Task { try await hub.stop() } }
        let users = (0..<12).map { "steady-\($0)" }
        let clients = users.map { ResumingClient(hub: hub, userID: $0) }
        for client in clients { try await client.start() }
        try await waitUntil("all connected") { try await hub.health().services.sse.totalClients == 12 }
        let victimShard = 1
        let victimPID = try #require(try await hub.health().workers[victimShard].pid)

        let total = 150
        for n in 0..<total {
            #expect(try await hub.publish(#"{"event":"seq","data":{"n":\#(n)}}"#).status == 200)
            if n == 50 { kill(victimPID, SIGKILL) }
            try await Task.sleep(for: .milliseconds(10))
        }
        for client in clients {
            try await waitUntil("\(client.userID) has every event", timeout: .seconds(30)) { client.numbers(of: "seq").count >= total }
        }
        for client in clients {
            #expect(client.numbers(of: "seq") == Array(0..<total), "\(client.userID): complete, ordered, no duplicates")
            let onVictim = ShardFunction.shard(for: client.userID, shardCount: 3) == victimShard
            #expect(client.reconnects == (onVictim ? 1 : 0), "\(client.userID)")
            #expect(client.events.filter { $0.event == "reset" }.isEmpty)
        }
        for client in clients { await client.stop() }
    }

    @Test func aClientThatStopsReadingIsDisconnectedAtTheBound() async throws {
        let hub = try await HubProcess.start(workers: 1, arguments: ["--max-pending-bytes", "65536"])
        defer { Task { try await hub.stop() } }
        let reader = try await hub.openStream("reader")
        let stalled = try await StalledClient.open(port: hub.port, target: "/api/sse/stream?token=\(try await hub.token("stalled"))")
        try await waitUntil("both streams counted") { try await hub.stats().totalClients == 2 }
        let workerPID = try #require(try await hub.health().workers[0].pid)
        let rssBefore = try residentKilobytes(of: workerPID)

        let payload = String(repeating: "x", count: 60_000)
        var published = 0
        while hub.logged("event=slow-consumer-disconnected").isEmpty {
            #expect(try await hub.publish(#"{"event":"bulk","data":{"n":\#(published),"pad":"\#(payload)"}}"#).status == 200)
            published += 1
            try #require(published < 2000, "the stalled client was never disconnected")
        }
        try await waitUntil("the stalled stream dropped") { try await hub.stats().totalClients == 1 }
        #expect(hub.logged("event=slow-consumer-disconnected", "user=stalled", level: "warning").count == 1)
        // The reader, on the same worker, got everything.
        try await reader.waitForEvent("bulk", count: published, timeout: .seconds(30))
        #expect(!reader.isClosed)
        let rssAfter = try residentKilobytes(of: workerPID)
        #expect(rssAfter - rssBefore < 64 * 1024, "worker RSS grew from \(rssBefore) KiB to \(rssAfter) KiB")
        await stalled.close()
    }

    @Test func aStreamEndsWhenItsTokenExpires() async throws {
        let hub = try await HubProcess.start(workers: 1)
        defer { Task { try await hub.stop() } }
        let token = try await hub.token("brief", lifetime: 2)
        let stream = try await SSETestStream.open(port: hub.port, target: "/api/sse/stream?token=\(token)")
        try await stream.waitForEvent("connected")
        let expired = try await stream.waitForEvent("token-expired", timeout: .seconds(10))
        #expect(expired.first?.data == #"{"reason":"token-expired"}"#)
        try await stream.waitForClose()
    }

    @Test func anIndependentSSEClientResumesWithLastEventID() async throws {
        let hub = try await HubProcess.start(workers: 2)
        defer { Task { try await hub.stop() } }
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Clients/sseclient_resume.py")
        let outcome = try await ChildProcess.run(
            URL(fileURLWithPath: "/usr/bin/env"),
            ["python3", script.path, String(hub.port), try await hub.token("py"), try await hub.token("backend", publisher: true)])
        let text = outcome.output + outcome.errors
        #expect(outcome.status == 0, "\(text)")
        #expect(text.contains("resumed: [1, 2, 3, 4]"), "\(text)")
    }
}

/// VmRSS of a process, in KiB.
func residentKilobytes(of pid: Int32) throws -> Int {
    guard let kilobytes = ProcessStat.residentKilobytes(pid: String(pid)) else { throw TimedOut(description: "no VmRSS for \(pid)") }
    return kilobytes
}
