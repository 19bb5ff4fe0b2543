import Foundation
import Shared
import Testing

@Suite("Reload (SIGHUP) replaces every worker while streams stay open", .serialized)
struct ReloadTests {
    @Test func reloadsUnderASteadyPublishStreamLoseNothingAndDropNobody() async throws {
        let hub = try await HubProcess.start(workers: 3)
        defer { Task { try await hub.stop() } }
        let users = (0..<12).map { "reload-\($0)" }
        #expect(Set(users.map { ShardFunction.shard(for: $0, shardCount: 3) }).count == 3)
        // Two users follow a topic, one of them subscribed with no stream open yet: topics must move too.
        #expect(try await hub.subscribe("reload-0", ["news"]).status == 200)
        let clients = users.map { ResumingClient(hub: hub, userID: $0) }
        for client in clients { try await client.start() }
        #expect(try await hub.subscribe("reload-1", ["news"]).status == 200)
        try await waitUntil("all connected") { try await hub.health().services.sse.totalClients == 12 }
        let pidsBefore = Set(try await hub.health().workers.compactMap(\.pid))

        let total = 150
        for n in 0..<total {
            #expect(try await hub.publish(#"{"event":"seq","data":{"n":\#(n)}}"#).status == 200)
            if n % 10 == 0 { #expect(try await hub.publish(#"{"event":"news","topic":"news","data":{"n":\#(n / 10)}}"#).status == 200) }
            if n == 30 || n == 90 { kill(hub.process.processIdentifier, SIGHUP) }
            try await Task.sleep(for: .milliseconds(10))
        }
        try await waitUntil("both reloads done", timeout: .seconds(60)) {
            hub.logged("event=reload-done").count >= 2
        }
        for client in clients {
            try await waitUntil("\(client.userID) has every event", timeout: .seconds(30)) { client.numbers(of: "seq").count >= total }
        }
        for client in clients {
            #expect(client.numbers(of: "seq") == Array(0..<total), "\(client.userID): complete, ordered, no duplicates")
            #expect(client.reconnects == 0, "\(client.userID) never noticed the reloads")
            #expect(client.events.filter { $0.event == "connected" }.count == 1)
            let expectNews = ["reload-0", "reload-1"].contains(client.userID)
            #expect(client.numbers(of: "news") == (expectNews ? Array(0..<(total / 10)) : []), "\(client.userID)")
        }
        let health = try await hub.health()
        #expect(health.status == "healthy")
        #expect(Set(health.workers.compactMap(\.pid)).isDisjoint(with: pidsBefore), "every worker was replaced")
        #expect(health.workers.allSatisfy { $0.restarts == 0 })
        try await waitUntil("streams counted on the new workers") { try await hub.health().services.sse.totalClients == 12 }
        #expect(try await hub.stats().topics["news"] == 2)
        #expect(hub.log.contains("event=connection-migrated"))
        if ProcessInfo.processInfo.environment["SSE_TEST_PRINT_LOG"] != nil { print(hub.log) }
        for client in clients { await client.stop() }
    }

    @Test func aWorkerDyingDuringAReloadCostsOnlyItsOwnClientsAReconnect() async throws {
        let hub = try await HubProcess.start(workers: 3)
        defer { Task { try await hub.stop() } }
        let users = (0..<12).map { "dying-\($0)" }
        let clients = users.map { ResumingClient(hub: hub, userID: $0) }
        for client in clients { try await client.start() }
        try await waitUntil("all connected") { try await hub.health().services.sse.totalClients == 12 }
        // Shard 0 is replaced first: kill its worker right as the reload begins (before or while it hands over).
        let victim = try #require(try await hub.health().workers.first { $0.shard == 0 }?.pid)

        let total = 120
        for n in 0..<total {
            #expect(try await hub.publish(#"{"event":"seq","data":{"n":\#(n)}}"#).status == 200)
            if n == 40 {
                kill(hub.process.processIdentifier, SIGHUP)
                kill(victim, SIGKILL)
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        try await waitUntil("the reload to finish", timeout: .seconds(60)) { !hub.logged("event=reload-done").isEmpty }
        for client in clients {
            try await waitUntil("\(client.userID) has every event", timeout: .seconds(30)) { client.numbers(of: "seq").count >= total }
        }
        for client in clients {
            #expect(client.numbers(of: "seq") == Array(0..<total), "\(client.userID): complete, ordered, no duplicates")
            let onVictim = ShardFunction.shard(for: client.userID, shardCount: 3) == 0
            if !onVictim { #expect(client.reconnects == 0, "\(client.userID) on a healthy worker never noticed") }
        }
        try await waitUntil("every worker up again") { try await hub.health().status == "healthy" }
        try await waitUntil("every stream counted") { try await hub.health().services.sse.totalClients == 12 }
        for client in clients { await client.stop() }
    }
}
