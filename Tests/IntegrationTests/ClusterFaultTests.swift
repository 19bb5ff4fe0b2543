import Foundation
import Shared
import Testing

/// What a hub across hosts does when a part of it fails: the database goes away and comes back, restarts, drops
/// connections; a host is killed. Streams stay up where they can, a publish is never accepted and then lost, and
/// every client ends with every accepted event once, in order.
@Suite("A hub across hosts: faults", .serialized)
struct ClusterFaultTests {
    @Test func whenTheDatabaseGoesAwayStreamsStayUpPublishesAreRefusedAndNothingAcceptedIsLost() async throws {
        let cluster = try await TestCluster.start(hosts: 2)
        defer { Task { await cluster.stop() } }
        let (a, b) = (cluster.hosts[0], cluster.hosts[1])
        let clients = [ResumingClient(hub: a, userID: "on-a"), ResumingClient(hub: b, userID: "on-b")]
        for client in clients { try await client.start() }
        let publisher = SteadyPublisher(through: [a, b])
        publisher.start()
        try await publisher.waitForAccepted(10)

        try await cluster.postgres.stopServer()
        // Publishes are refused with a JSON 503, health says degraded: on both hosts.
        try await waitUntil("a publish refused") { publisher.refused.count >= 3 }
        let refusal = try await a.publishNumbered("probe", 0)
        #expect(refusal.status == 503)
        #expect(String(decoding: refusal.body, as: UTF8.self).contains(#""success":false"#))
        for host in [a, b] {
            try await waitUntil("health to say degraded") { try await host.health().cluster?.eventLog == "unreachable" }
            let response = try await TestHTTP.request(port: host.port, "GET", "/api/health")
            #expect(response.status == 503)
            #expect(try await host.health().status == "degraded")
        }
        // Streams stay up, and a reconnect is still served (authentication needs no database), resuming from memory.
        #expect(clients.allSatisfy { $0.reconnects == 0 })
        let outage = try await SSETestStream.open(
            port: a.port, target: "/api/sse/stream?token=\(try await a.token("during-outage"))",
            headers: ["Last-Event-ID": clients[0].events.last { $0.id != nil }?.id ?? ""])
        try await outage.waitForEvent("connected")
        #expect(outage.events(named: "reset").isEmpty)
        // A subscribe applies here at once, but the log cannot confirm it to the other hosts: 503, saying so.
        let subscribe = try await a.subscribe("during-outage", ["outage-news"])
        #expect(subscribe.status == 503)
        #expect(String(decoding: subscribe.body, as: UTF8.self).contains("the topics apply on this host now"))

        try await cluster.postgres.startServer()
        try await waitUntilHealthy([a, b])
        // Once the log is back, the subscription made during the outage reaches B: the user's stream there has it.
        let moved = try await b.openStream("during-outage")
        #expect(try await a.publishNumbered("outage-headline", 1, topic: "outage-news").status == 200)
        #expect(try await moved.waitForEvent("outage-headline").map(\.data) == [#"{"n":1}"#])
        try await publisher.waitForAccepted(10)
        await publisher.stop()
        let last = try #require(publisher.accepted.last)
        for client in clients {
            try await expectEveryAcceptedPublish(of: publisher, through: last, deliveredTo: client)
            #expect(client.reconnects == 0)
            await client.stop()
        }
        #expect(a.logged("event=log-unreachable").count == 1)
        #expect(a.logged("event=log-reachable").count == 1)
        await cluster.stop()
    }

    @Test func whenAHostIsKilledItsClientsResumeOnTheOthersWithCompleteSequences() async throws {
        let cluster = try await TestCluster.start(hosts: 3)
        defer { Task { await cluster.stop() } }
        let (a, b, c) = (cluster.hosts[0], cluster.hosts[1], cluster.hosts[2])
        #expect(try await a.subscribe("topical", ["news"]).status == 200)
        let clients = (0..<6).map { ResumingClient(hubs: [a, b, c], userID: "client-\($0)") }
        for client in clients { try await client.start() }
        let publisher = SteadyPublisher(through: [b, c])
        publisher.start()
        try await publisher.waitForAccepted(15)

        kill(a.process.processIdentifier, SIGKILL)
        try await waitUntil("every client to move to another host", timeout: .seconds(30)) {
            clients.allSatisfy { $0.reconnects >= 1 }
        }
        try await publisher.waitForAccepted(15)
        await publisher.stop()
        let last = try #require(publisher.accepted.last)
        #expect(publisher.refused.isEmpty)
        for client in clients {
            try await expectEveryAcceptedPublish(of: publisher, through: last, deliveredTo: client)
            // A reconnect may reach the dying host while its sockets close; it ends on another.
            #expect(client.hostsVisited.first == 0 && client.hostsVisited.last != 0, "\(client.hostsVisited)")
            #expect(client.events.filter { $0.event == "reset" }.isEmpty)
            await client.stop()
        }
        // The dead host ages out of the hub's stats and health.
        try await waitUntil("the killed host to leave the hub's view", timeout: .seconds(30)) {
            let hosts = try await b.health().cluster?.hosts.map(\.hostId) ?? []
            return !hosts.contains("host-a") && hosts.count == 2
        }
        await cluster.stop()
    }

    @Test func connectionsKilledByTheServerAndARestartOfPostgreSQLLoseNothing() async throws {
        let cluster = try await TestCluster.start(hosts: 2)
        defer { Task { await cluster.stop() } }
        let (a, b) = (cluster.hosts[0], cluster.hosts[1])
        let clients = [ResumingClient(hub: a, userID: "x"), ResumingClient(hub: b, userID: "y")]
        for client in clients { try await client.start() }
        let publisher = SteadyPublisher(through: [a, b])
        publisher.start(interval: .milliseconds(5))
        try await publisher.waitForAccepted(20)

        // Every connection of the hosts, ended from the server's side, twice.
        for _ in 0..<2 {
            try await cluster.postgres.query(
                "SELECT count(pg_terminate_backend(pid))::text FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")
            try await publisher.waitForAccepted(20)
        }
        // A crash and restart of the server (immediate shutdown: recovery at start).
        try await cluster.postgres.stopServer(immediate: true)
        try await cluster.postgres.startServer()
        try await waitUntilHealthy([a, b])
        try await publisher.waitForAccepted(20)
        await publisher.stop()
        let last = try #require(publisher.accepted.last)
        for client in clients {
            try await expectEveryAcceptedPublish(of: publisher, through: last, deliveredTo: client)
            await client.stop()
        }
        await cluster.stop()
    }

    func waitUntilHealthy(_ hosts: [HubProcess]) async throws {
        for host in hosts {
            try await waitUntil("health to recover", timeout: .seconds(20)) { try await host.health().status == "healthy" }
        }
    }

    /// The client got up to `last`, and every accepted publish once, in order, nothing never published.
    func expectEveryAcceptedPublish(of publisher: SteadyPublisher, through last: Int, deliveredTo client: ResumingClient) async throws {
        try await waitUntil("the last accepted publish delivered", timeout: .seconds(20)) { client.numbers(of: "seq").contains(last) }
        #expect(publisher.problems(in: client.numbers(of: "seq")) == nil)
    }
}
