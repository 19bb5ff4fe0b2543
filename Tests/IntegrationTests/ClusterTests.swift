import Foundation
import Logging
import PostgresNIO
import Shared
import Testing

@testable import PostgresLog

/// Several hosts, one hub: real supervisors on their own ports sharing an event log in a real PostgreSQL server
/// (started for each test, `PostgresServer`).
@Suite("A hub across hosts: the shared PostgreSQL log", .serialized)
struct ClusterTests {
    @Test func publishesFromEveryHostReachEveryHostInOneOrderWithTheSameIDs() async throws {
        let cluster = try await TestCluster.start()
        defer { Task { await cluster.stop() } }
        var streams: [SSETestStream] = []
        for (index, host) in cluster.hosts.enumerated() { streams.append(try await host.openStream("viewer-\(index)")) }

        // Every host publishes at once, and the database too (an app's own transaction).
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, host) in cluster.hosts.enumerated() {
                group.addTask {
                    for n in 0..<20 {
                        let status = try await host.publishNumbered("tick", index * 100 + n).status
                        #expect(status == 200)
                    }
                }
            }
            group.addTask {
                for n in 0..<5 { try await cluster.postgres.query(#"SELECT sse_hub.publish('tick', '{"n": \#(900 + n)}')::text"#) }
            }
            try await group.waitForAll()
        }
        for stream in streams { try await stream.waitForEvent("tick", count: 65, timeout: .seconds(20)) }
        let sequences = streams.map { stream in stream.events.filter { $0.event == "tick" }.map { "\($0.id ?? "-") \($0.data)" } }
        #expect(sequences[0] == sequences[1])
        #expect(sequences[1] == sequences[2])
        // An id is the event's position in the log, under the log's identity: one epoch, consecutive positions.
        let ids = streams[0].events.filter { $0.event == "tick" }.compactMap { $0.id.flatMap(EventID.init) }
        #expect(ids.count == 65 && Set(ids.map(\.epoch)).count == 1)
        #expect(ids.map(\.sequence) == Array(ids[0].sequence..<(ids[0].sequence + 65)))
        // Each publisher's own events keep its order.
        let numbers = streams[0].events.filter { $0.event == "tick" }.map(\.data)
        for index in 0..<3 {
            let own = numbers.compactMap { Int($0.dropFirst(5).dropLast()) }.filter { $0 / 100 == index && $0 < 900 }
            #expect(own == (0..<20).map { index * 100 + $0 })
        }

        // A topic published on one host reaches its subscriber on another; a user's event reaches only that user.
        #expect(try await cluster.hosts[2].subscribe("viewer-2", ["scores"]).status == 200)
        #expect(try await cluster.hosts[0].publishNumbered("score", 1, topic: "scores").status == 200)
        #expect(try await cluster.hosts[2].publishNumbered("direct", 2, userID: "viewer-1").status == 200)
        #expect(try await streams[2].waitForEvent("score").map(\.data) == [#"{"n":1}"#])
        #expect(try await streams[1].waitForEvent("direct").map(\.data) == [#"{"n":2}"#])
        #expect(try await cluster.hosts[1].publishNumbered("marker", 3).status == 200)
        for stream in streams { try await stream.waitForEvent("marker") }
        #expect(streams[0].events(named: "score").isEmpty && streams[1].events(named: "score").isEmpty)
        #expect(streams[0].events(named: "direct").isEmpty && streams[2].events(named: "direct").isEmpty)

        // Stats and health speak for the hub: every host's streams, and each host under its own key.
        try await waitUntil("every host's streams counted", timeout: .seconds(10)) {
            let stats = try await cluster.hosts[0].stats()
            return stats.totalClients == 3 && stats.hosts?.count == 3 && stats.topics["scores"] == 1
        }
        let health = try await cluster.hosts[1].health()
        #expect(health.cluster?.eventLog == "up")
        #expect(Set(health.cluster?.hosts.map(\.hostId) ?? []) == ["host-a", "host-b", "host-c"])
        await cluster.stop()
    }

    @Test func aClientResumesOnAnotherHostWithExactlyWhatItMissed() async throws {
        let cluster = try await TestCluster.start()
        defer { Task { await cluster.stop() } }
        let (a, b, c) = (cluster.hosts[0], cluster.hosts[1], cluster.hosts[2])
        #expect(try await a.subscribe("rita", ["news"]).status == 200)
        let first = try await a.openStream("rita")
        #expect(try await c.publishNumbered("tick", 0).status == 200)
        let lastID = try #require(try await first.waitForEvent("tick").last?.id)
        await first.close()

        // While rita is away, publishes through every host: hers, and what she must not get.
        #expect(try await a.publishNumbered("tick", 1).status == 200)
        #expect(try await b.publishNumbered("tick", 2, userID: "rita").status == 200)
        #expect(try await c.publishNumbered("tick", -1, topic: "sports").status == 200)
        #expect(try await b.publishNumbered("tick", -2, userID: "someone-else").status == 200)
        #expect(try await c.publishNumbered("tick", 3).status == 200)
        // Her topic, subscribed through A, is hers on B too.
        #expect(try await a.publishNumbered("tick", 4, topic: "news").status == 200)

        let resumed = try await SSETestStream.open(
            port: b.port, target: "/api/sse/stream?token=\(try await b.token("rita"))", headers: ["Last-Event-ID": lastID])
        try await resumed.waitForEvent("tick", count: 4)
        #expect(try await c.publishNumbered("tick", 5).status == 200)
        let ticks = try await resumed.waitForEvent("tick", count: 5)
        #expect(ticks.map(\.data) == (1...5).map { #"{"n":\#($0)}"# })
        #expect(resumed.events(named: "reset").isEmpty)

        // An id of another log (another epoch), or one the log no longer holds, gets `reset` first.
        let foreign = try await SSETestStream.open(
            port: c.port, target: "/api/sse/stream?token=\(try await c.token("rita"))", headers: ["Last-Event-ID": "12345-1"])
        try await foreign.waitForEvent("reset")
        await cluster.stop()
    }

    /// The client's last event came from a host a moment ahead of this one: the resume waits until this host has
    /// delivered it (no `reset`, nothing twice), and gives up with `reset` only after its patience.
    @Test func aResumeFromAnEventThisHostHasNotDeliveredYetWaitsForIt() async throws {
        let cluster = try await TestCluster.start(hosts: 2)
        defer { Task { await cluster.stop() } }
        let (a, b) = (cluster.hosts[0], cluster.hosts[1])
        let watcher = try await a.openStream("watcher")
        #expect(try await a.publishNumbered("tick", 0).status == 200)
        let seen = try #require(try await watcher.waitForEvent("tick").last?.id.flatMap(EventID.init))
        let ahead = EventID(epoch: seen.epoch, sequence: seen.sequence + 1)
        let resumed = try await SSETestStream.open(
            port: b.port, target: "/api/sse/stream?token=\(try await b.token("ahead"))", headers: ["Last-Event-ID": "\(ahead)"])
        #expect(try await a.publishNumbered("tick", 1).status == 200)  // the event the client says it has
        #expect(try await a.publishNumbered("tick", 2).status == 200)
        #expect(try await resumed.waitForEvent("tick").map(\.data) == [#"{"n":2}"#])
        #expect(resumed.events(named: "reset").isEmpty && resumed.events(named: "connected").count == 1)

        let farAhead = EventID(epoch: seen.epoch, sequence: seen.sequence + 1000)
        let gaveUp = try await SSETestStream.open(
            port: b.port, target: "/api/sse/stream?token=\(try await b.token("far"))", headers: ["Last-Event-ID": "\(farAhead)"])
        try await gaveUp.waitForEvent("reset")
        await cluster.stop()
    }

    @Test func aHostThatJoinsLaterServesResumesFromTheLog() async throws {
        let cluster = try await TestCluster.start(hosts: 1)
        defer { Task { await cluster.stop() } }
        let a = cluster.hosts[0]
        let first = try await a.openStream("late")
        for n in 0..<3 { #expect(try await a.publishNumbered("tick", n).status == 200) }
        let lastID = try #require(try await first.waitForEvent("tick", count: 3)[0].id)
        await first.close()

        let joiner = try await cluster.postgres.startHost(named: "host-late")
        defer { Task { try await joiner.stop() } }
        let resumed = try await SSETestStream.open(
            port: joiner.port, target: "/api/sse/stream?token=\(try await joiner.token("late"))", headers: ["Last-Event-ID": lastID])
        #expect(try await resumed.waitForEvent("tick", count: 2).map(\.data) == [#"{"n":1}"#, #"{"n":2}"#])
        #expect(try await a.publishNumbered("tick", 3).status == 200)
        #expect(try await resumed.waitForEvent("tick", count: 3).last?.data == #"{"n":3}"#)
        _ = try? await joiner.stop()
        await cluster.stop()
    }

    /// Retention by count, in the database (bounded deletes by one host); a host that joins afterwards resumes from
    /// what the log still holds and tells a client whose id is older `reset`.
    @Test func theLogKeepsHistorySizeEventsAndAnOlderIDGetsResetOnAHostThatJoinsLater() async throws {
        let cluster = try await TestCluster.start(hosts: 1, arguments: ["--history-size", "5"])
        defer { Task { await cluster.stop() } }
        let a = cluster.hosts[0]
        let watcher = try await a.openStream("watcher")
        for n in 0..<20 { #expect(try await a.publishNumbered("tick", n).status == 200) }
        let ids = try await watcher.waitForEvent("tick", count: 20).compactMap(\.id)
        try await waitUntil("retention to leave the last 5 events", timeout: .seconds(30), poll: .milliseconds(200)) {
            try await cluster.postgres.query("SELECT count(*)::text FROM sse_hub.events") == ["5"]
        }
        let joiner = try await cluster.postgres.startHost(named: "host-late", arguments: ["--history-size", "5"])
        defer { Task { try await joiner.stop() } }
        let old = try await SSETestStream.open(
            port: joiner.port, target: "/api/sse/stream?token=\(try await joiner.token("old"))", headers: ["Last-Event-ID": ids[3]])
        try await old.waitForEvent("reset")
        let recent = try await SSETestStream.open(
            port: joiner.port, target: "/api/sse/stream?token=\(try await joiner.token("recent"))", headers: ["Last-Event-ID": ids[16]])
        #expect(try await recent.waitForEvent("tick", count: 3).map(\.data) == (17..<20).map { #"{"n":\#($0)}"# })
        #expect(recent.events(named: "reset").isEmpty)
        _ = try? await joiner.stop()
        await cluster.stop()
    }

    @Test func anEventPublishedInAnAppsTransactionGoesOutOnCommitAndNeverOnRollback() async throws {
        let cluster = try await TestCluster.start(hosts: 2)
        defer { Task { await cluster.stop() } }
        let stream = try await cluster.hosts[1].openStream("watcher")
        let committedID = try await cluster.postgres.withConnection { connection in
            // The app writes its own row and publishes in the same transaction.
            try await connection.query("CREATE TABLE app_posts (id serial PRIMARY KEY, title text)", logger: PostgresServer.logger)
            try await connection.query("BEGIN", logger: PostgresServer.logger)
            try await connection.query("INSERT INTO app_posts (title) VALUES ('never')", logger: PostgresServer.logger)
            try await connection.query(#"SELECT sse_hub.publish('post', '{"title": "never"}')"#, logger: PostgresServer.logger)
            try await connection.query("ROLLBACK", logger: PostgresServer.logger)
            try await connection.query("BEGIN", logger: PostgresServer.logger)
            try await connection.query("INSERT INTO app_posts (title) VALUES ('kept')", logger: PostgresServer.logger)
            let rows = try await connection.query(
                #"SELECT sse_hub.publish('post', '{"title": "kept"}', topic => NULL, user_id => 'watcher')"#, logger: PostgresServer.logger)
            var id: Int64 = 0
            for try await value in rows.decode(Int64.self) { id = value }
            try await connection.query("COMMIT", logger: PostgresServer.logger)
            return id
        }
        let posts = try await stream.waitForEvent("post")
        #expect(posts.map(\.data) == [#"{"title": "kept"}"#])
        #expect(posts.first?.id.flatMap(EventID.init)?.sequence == UInt64(committedID))
        // The rolled-back publish took no position: the committed one is the log's first.
        #expect(committedID == 1)
        // Names that would break an SSE frame are refused by the database itself.
        await #expect(throws: (any Error).self) {
            try await cluster.postgres.query("SELECT sse_hub.publish(E'bad\\nname', '{}')::text")
        }
        await #expect(throws: (any Error).self) {
            try await cluster.postgres.query("SELECT sse_hub.publish('ok', '{}', 'topic', 'user')::text")
        }
        await cluster.stop()
    }

    /// The interleaving that would break a reader that follows ids: a transaction holds id N uncommitted while a
    /// later one wants N+1. The head's row lock makes the later one wait (seen in `pg_stat_activity`) until the
    /// first ends: on commit it gets N+1, on rollback it gets N. No host ever sees a hole or a reordering.
    @Test func aLaterTransactionWaitsForAnEarlierOneSoIdsAreNeverSkippedOrReordered() async throws {
        let cluster = try await TestCluster.start(hosts: 2)
        defer { Task { await cluster.stop() } }
        let streams = [try await cluster.hosts[0].openStream("w0"), try await cluster.hosts[1].openStream("w1")]
        let logger = PostgresServer.logger

        for outcome in ["COMMIT", "ROLLBACK"] {
            try await cluster.postgres.withConnection { first in
                try await first.query("BEGIN", logger: logger)
                try await first.query(#"SELECT sse_hub.publish('step', '{"who": "first"}')"#, logger: logger)
                // The second publisher (over HTTP, through host B's group commit) must wait on the head's lock.
                let second = Task { try await cluster.hosts[1].publish(#"{"event":"step","data":{"who":"second"}}"#) }
                try await waitUntil("the second publish to wait on the head's lock") {
                    let waiting = try await cluster.postgres.query(
                        "SELECT count(*)::text FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%append_batch%'")
                    return waiting.first == "1"
                }
                try await first.query(PostgresQuery(unsafeSQL: outcome), logger: logger)
                #expect(try await second.value.status == 200)
            }
        }
        // COMMIT round: first (N), second (N+1); ROLLBACK round: second (N+2). Every host: the same, no hole.
        for stream in streams {
            let steps = try await stream.waitForEvent("step", count: 3)
            #expect(steps.map(\.data) == [#"{"who": "first"}"#, #"{"who":"second"}"#, #"{"who":"second"}"#])
            let positions = steps.compactMap { $0.id.flatMap(EventID.init)?.sequence }
            #expect(positions == [1, 2, 3])
        }
        await cluster.stop()
    }

    @Test func aDatabaseWithANewerSchemaIsRefusedWithAClearMessage() async throws {
        let cluster = try await TestCluster.start(hosts: 1)
        defer { Task { await cluster.stop() } }
        try await cluster.postgres.query("UPDATE sse_hub.meta SET schema_version = 999")
        let outcome = try await ChildProcess.run(
            HubProcess.buildDirectory.appendingPathComponent("sse-supervisor"),
            ["--listen", "127.0.0.1:0", "--workers", "1", "--postgres-url", cluster.postgres.url, "--user", "nobody"],
            environment: ["SSE_JWT_SECRET": HubProcess.secret], timeout: .seconds(30))
        #expect(outcome.status == 78)
        #expect((outcome.output + outcome.errors).contains("schema version 999, newer than this release understands (2)"))
        // The running host was not touched, and the version was left as it was.
        #expect(try await cluster.postgres.query("SELECT schema_version::text FROM sse_hub.meta") == ["999"])
        await cluster.stop()
    }

    /// A database of the previous release (schema version 1) is upgraded when a host of this one joins, and a host of
    /// the previous release, still running, keeps writing through the old function: its streams count (one per
    /// user), and its user's stream ends this release's.
    @Test func aDatabaseOfThePreviousReleaseIsUpgradedAndItsHostsStillCount() async throws {
        let postgres = try await PostgresServer.start()
        try await postgres.withConnection { connection in
            try await LogSchema.prepare(on: connection, logger: Logger(label: "test"), upTo: 1)
        }
        try await postgres.query("SELECT sse_hub.append_user_changes('old-host', ARRAY['subscribed'], ARRAY['zoe'], ARRAY['room'])::text")
        let a = try await postgres.startHost(named: "host-a")
        #expect(try await postgres.query("SELECT schema_version::text FROM sse_hub.meta") == ["2"])
        #expect(!a.logged("event=log-schema-upgraded").isEmpty)
        try await postgres.query(
            "INSERT INTO sse_hub.hosts VALUES ('old-host', now(), now() + interval '1 hour', 0, 0, '{}')")
        func zoe() async throws -> UserPresenceBody {
            try PresenceTests.decode(UserPresenceBody.self, try await PresenceTests.presence(a, "userId=zoe"))
        }
        let before = try await zoe()
        #expect(before.topics == ["room"] && !before.online)
        try await postgres.query("SELECT sse_hub.append_user_changes('old-host', ARRAY['stream'], ARRAY['zoe'], ARRAY[''])::text")
        #expect(try await zoe().streams == 1)
        // Her stream moves to this release's host: the old host's leaves the count (that host ends it on reading A's
        // `stream`, by its own rule), and A's counts.
        let here = try await a.openStream("zoe")
        try await waitUntil("A's stream counted and the old host's ended") {
            try await postgres.query("SELECT kind || ':' || host_id FROM sse_hub.user_changes WHERE kind = 'replaced'") == ["replaced:old-host"]
        }
        #expect(try await zoe().streams == 1)
        // And back: the old host's new stream ends A's, which is told `replaced`.
        try await postgres.query("SELECT sse_hub.append_user_changes('old-host', ARRAY['stream'], ARRAY['zoe'], ARRAY[''])::text")
        try await here.waitForClose()
        #expect(here.events.last?.event == "replaced")
        try await postgres.query("SELECT sse_hub.append_user_changes('old-host', ARRAY['closed'], ARRAY['zoe'], ARRAY[''])::text")
        #expect(try await zoe().streams == 0)
        _ = try? await a.stop()
        try? await postgres.stopServer()
        postgres.removeDirectory()
    }

    // MARK: One user across hosts

    @Test func topicsSubscribedThroughOneHostApplyToTheUsersStreamOnAnother() async throws {
        let cluster = try await TestCluster.start()
        defer { Task { await cluster.stop() } }
        let (a, b, c) = (cluster.hosts[0], cluster.hosts[1], cluster.hosts[2])
        let stream = try await b.openStream("una")
        #expect(try await a.subscribe("una", ["scores", "news"]).status == 200)
        // The change reaches B through the log; B's worker counts her as a subscriber once it has it.
        try await waitUntil("B to know una's topics") { try await b.stats().topics == ["scores": 1, "news": 1] }
        #expect(try await c.publishNumbered("score", 1, topic: "scores").status == 200)
        #expect(try await stream.waitForEvent("score").map(\.data) == [#"{"n":1}"#])

        let body = String(decoding: try JSONEncoder().encode(["topics": ["scores"]]), as: UTF8.self)
        let unsubscribed = try await TestHTTP.request(
            port: c.port, "POST", "/api/sse/unsubscribe",
            headers: ["x-auth-token": try await c.token("una"), "Content-Type": "application/json"], body: body)
        #expect(unsubscribed.status == 200)
        try await waitUntil("B to drop una's topic") { try await b.stats().topics == ["news": 1] }
        #expect(try await a.publishNumbered("score", 2, topic: "scores").status == 200)
        #expect(try await a.publishNumbered("headline", 3, topic: "news").status == 200)
        try await stream.waitForEvent("headline")
        #expect(stream.events(named: "score").count == 1)

        // A host that joins later starts with every user's topics.
        let late = try await cluster.postgres.startHost(named: "host-late")
        defer { Task { try await late.stop() } }
        await stream.close()
        let moved = try await late.openStream("una")
        #expect(try await b.publishNumbered("headline", 4, topic: "news").status == 200)
        #expect(try await moved.waitForEvent("headline").map(\.data) == [#"{"n":4}"#])
        _ = try? await late.stop()
        await cluster.stop()
    }

    /// A subscribe is answered once the change is in the log, so a publish made after the answer, through any host,
    /// comes after it in every host's order: the user's stream on a third host cannot miss it.
    @Test func aPublishRightAfterASubscribeIsAnsweredReachesTheUsersStreamOnAnyHost() async throws {
        let cluster = try await TestCluster.start()
        defer { Task { await cluster.stop() } }
        let (a, b, c) = (cluster.hosts[0], cluster.hosts[1], cluster.hosts[2])
        let stream = try await b.openStream("quick")
        let rounds = 30
        // Publishing from SQL on a connection already open is the quickest publish there is: it follows the answer
        // by a fraction of a millisecond, so a subscribe answered before its change is logged loses the race.
        try await cluster.postgres.withConnection { sql in
            for round in 1...rounds {
                #expect(try await a.subscribe("quick", ["round-\(round)"]).status == 200)
                _ = try await sql.query(
                    "SELECT sse_hub.publish('round', jsonb_build_object('n', \(round)), \("round-\(round)"))", logger: PostgresServer.logger
                ).collect()
            }
        }
        #expect(try await c.publishNumbered("done", 0, userID: "quick").status == 200)
        try await stream.waitForEvent("done")
        #expect(stream.events(named: "round").map(\.data) == (1...rounds).map { #"{"n": \#($0)}"# })  // jsonb's text
        await cluster.stop()
    }

    /// A host of the hub upgraded in place (SIGHUP) keeps its streams and its place in the log: its new program follows
    /// the log from where the old one stopped, so its clients miss nothing published meanwhile through any host.
    @Test func aHostUpgradedInPlaceKeepsItsStreamsAndItsPlaceInTheLog() async throws {
        let cluster = try await TestCluster.start(hosts: 2)
        defer { Task { await cluster.stop() } }
        let (a, b) = (cluster.hosts[0], cluster.hosts[1])
        let clients = (0..<4).map { ResumingClient(hubs: [a, b], userID: "steady-\($0)", startingOn: $0 == 3 ? 1 : 0) }
        for client in clients { try await client.start() }
        #expect(try await b.subscribe("steady-0", ["news"]).status == 200)
        let publisher = SteadyPublisher(through: [a, b])
        publisher.start(interval: .milliseconds(5))
        try await publisher.waitForAccepted(20)
        kill(a.process.processIdentifier, SIGHUP)
        try await waitUntil("A's upgrade and reload", timeout: .seconds(30)) { !a.logged("event=reload-done").isEmpty }
        #expect(a.logged("event=upgrade-done").count == 1)
        try await publisher.waitForAccepted(20)
        #expect(try await b.publishNumbered("headline", 1, topic: "news").status == 200)
        await publisher.stop()
        let last = try #require(publisher.accepted.last)
        for client in clients {
            try await waitUntil("\(client.userID) has every event", timeout: .seconds(20)) { client.numbers(of: "seq").contains(last) }
            #expect(publisher.problems(in: client.numbers(of: "seq")) == nil, "\(client.userID)")
            #expect(client.reconnects == 0, "\(client.userID)")
        }
        try await waitUntil("the headline on A's stream") { clients[0].numbers(of: "headline") == [1] }
        #expect(try await a.health().cluster?.eventLog == "up")
        for client in clients { await client.stop() }
        await cluster.stop()
    }

    @Test func aNewStreamOnOneHostEndsTheUsersStreamOnAnother() async throws {
        let cluster = try await TestCluster.start(hosts: 2)
        defer { Task { await cluster.stop() } }
        let (a, b) = (cluster.hosts[0], cluster.hosts[1])
        let first = try await a.openStream("solo")
        let second = try await b.openStream("solo")
        try await waitUntil("the older stream, on A, to be ended") { first.isClosed }
        #expect(!second.isClosed)
        #expect(try await a.publishNumbered("tick", 1, userID: "solo").status == 200)
        #expect(try await second.waitForEvent("tick").map(\.data) == [#"{"n":1}"#])
        #expect(first.events(named: "tick").isEmpty)
        try await waitUntil("the hub to count one stream") { try await a.stats().totalClients == 1 }
        // The line reaches the test through the worker's stderr, which the stream's end may overtake.
        try await waitUntil("A to log the replacement") { !a.logged("event=stream-replaced").isEmpty }
        await cluster.stop()
    }

    @Test func topicGraceIsTheHubsAUserMovingHostsKeepsTopicsAndOneGoneForTheGraceLosesThem() async throws {
        let cluster = try await TestCluster.start(hosts: 2, arguments: ["--topic-grace", "3"])
        defer { Task { await cluster.stop() } }
        let (a, b) = (cluster.hosts[0], cluster.hosts[1])
        #expect(try await a.subscribe("mover", ["news"]).status == 200)
        #expect(try await a.subscribe("leaver", ["news"]).status == 200)
        let mover = try await a.openStream("mover")
        let leaver = try await a.openStream("leaver")
        try await waitUntil("both counted") { try await a.stats().topics["news"] == 2 }
        await leaver.close()
        // The mover leaves A and comes back on B, well within the grace, and stays: their topic stays with them,
        // although A's worker saw them go dark.
        await mover.close()
        let back = try await b.openStream("mover")
        // Past the grace (and the sweep that runs every few heartbeats), the leaver, with no stream anywhere, is
        // forgotten on every host; the mover is not.
        try await waitUntil("the leaver forgotten in the database", timeout: .seconds(40), poll: .milliseconds(200)) {
            try await cluster.postgres.query("SELECT count(*)::text FROM sse_hub.user_topics WHERE user_id = 'leaver'") == ["0"]
        }
        try await waitUntil("A's ledger to drop the leaver") { a.logged("event=users-forgotten").count + b.logged("event=users-forgotten").count >= 1 }
        #expect(try await cluster.postgres.query("SELECT topic FROM sse_hub.user_topics WHERE user_id = 'mover'") == ["news"])
        #expect(try await a.publishNumbered("headline", 1, topic: "news").status == 200)
        #expect(try await back.waitForEvent("headline").map(\.data) == [#"{"n":1}"#])
        let returning = try await a.openStream("leaver")
        #expect(try await b.publishNumbered("headline", 2, topic: "news").status == 200)
        try await back.waitForEvent("headline", count: 2)
        try await waitUntil("the leaver's new stream to have had time to receive") { try await a.stats().totalClients == 2 }
        #expect(returning.events(named: "headline").isEmpty)
        await cluster.stop()
    }
}
