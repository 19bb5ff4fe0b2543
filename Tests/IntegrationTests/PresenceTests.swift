import Foundation
import Shared
import Testing

/// Who is online: `GET /api/sse/presence` (a topic's users with a live stream, or one user, paginated) and
/// `--presence-events` (a user's coming online and going offline, published to their topics, a reconnect within
/// `--presence-grace` silent), through a real supervisor and its workers.
@Suite(.serialized) struct PresenceTests {
    static func presence(_ hub: HubProcess, _ query: String, token: String? = nil) async throws -> TestHTTP.Response {
        var bearer = token
        if bearer == nil { bearer = try await hub.token("backend", publisher: true) }
        return try await TestHTTP.request(port: hub.port, "GET", "/api/sse/presence?\(query)", headers: ["Authorization": "Bearer \(bearer!)"])
    }

    static func decode<T: Decodable>(_ type: T.Type, _ response: TestHTTP.Response) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(response.body))
    }

    @Test func aTopicsOnlineUsersAndOneUserArePaginatedAcrossWorkers() async throws {
        let hub = try await HubProcess.start(workers: 3, arguments: ["--max-streams-per-user", "2"])
        defer { Task { try await hub.stop() } }
        var opened: [SSETestStream] = []
        for user in ["alice", "alice", "bob", "carol"] { opened.append(try await hub.openStream(user)) }
        let streams = opened
        defer { Task { for stream in streams { await stream.close() } } }
        for user in ["alice", "bob", "carol", "dave"] { #expect(try await hub.subscribe(user, ["room"]).status == 200) }
        #expect(try await hub.subscribe("alice", ["lobby"]).status == 200)

        let all = try Self.decode(TopicPresenceBody.self, try await Self.presence(hub, "topic=room"))
        #expect(all.users == [.init(userId: "alice", streams: 2), .init(userId: "bob", streams: 1), .init(userId: "carol", streams: 1)])
        #expect(all.nextCursor == nil, "dave subscribed without a stream: not online")

        let first = try Self.decode(TopicPresenceBody.self, try await Self.presence(hub, "topic=room&limit=2"))
        #expect(first.users.map(\.userId) == ["alice", "bob"] && first.nextCursor == "bob")
        let second = try Self.decode(TopicPresenceBody.self, try await Self.presence(hub, "topic=room&limit=2&cursor=bob"))
        #expect(second.users.map(\.userId) == ["carol"] && second.nextCursor == nil)

        let alice = try Self.decode(UserPresenceBody.self, try await Self.presence(hub, "userId=alice"))
        #expect(alice.online && alice.streams == 2 && alice.topics == ["lobby", "room"])
        let since = try #require(alice.since.flatMap { try? Date($0, strategy: .iso8601) })
        #expect(abs(since.timeIntervalSinceNow) < 60)
        let dave = try Self.decode(UserPresenceBody.self, try await Self.presence(hub, "userId=dave"))
        #expect(!dave.online && dave.streams == 0 && dave.since == nil && dave.topics == ["room"])
        let topicsPage = try Self.decode(UserPresenceBody.self, try await Self.presence(hub, "userId=alice&limit=1"))
        #expect(topicsPage.topics == ["lobby"] && topicsPage.nextCursor == "lobby")

        #expect(try await TestHTTP.request(port: hub.port, "GET", "/api/sse/presence?topic=room").status == 401)
        #expect(try await Self.presence(hub, "topic=room", token: try await hub.token("alice")).status == 403)
        for bad in ["topic=room&userId=alice", "", "topic=no%20spaces", "topic=room&limit=0", "topic=room&limit=1001", "userId=a&cursor="] {
            let refused = try await Self.presence(hub, bad)
            #expect(refused.status == 400, "\(bad): \(refused.text)")
        }
    }

    @Test func presenceEventsReachTheUsersTopicsAndAReconnectWithinTheGraceIsSilent() async throws {
        let hub = try await HubProcess.start(workers: 2, arguments: ["--presence-events", "--presence-grace", "1"])
        defer { Task { try await hub.stop() } }
        let watcher = try await hub.openStream("erin")
        defer { Task { await watcher.close() } }
        #expect(try await hub.subscribe("erin", ["room"]).status == 200)
        #expect(try await hub.subscribe("frank", ["room"]).status == 200)

        let frank = try await hub.openStream("frank")
        try await watcher.waitForEvent("presence")
        await frank.close()
        // Back at once, within the grace: nothing is published for the gap.
        let back = try await hub.openStream("frank")
        await back.close()
        let seen = try await watcher.waitForEvent("presence", count: 2, timeout: .seconds(15))
        #expect(seen.map(\.data) == [#"{"online":true,"userId":"frank"}"#, #"{"online":false,"userId":"frank"}"#], "\(seen)")
        // A user without topics has nobody to tell; the watcher's own coming online went to nobody but itself.
        let loner = try await hub.openStream("gina")
        await loner.close()
        #expect(try await hub.publish(#"{"topic":"room","event":"marker","data":1}"#).status == 200)
        try await watcher.waitForEvent("marker")
        #expect(watcher.events(named: "presence").count == 2)
    }

    /// A reload moves every stream to a new worker: nobody went offline or came online, so nothing is published; and
    /// the moved stream's user still goes offline when it closes.
    @Test func aReloadIsSilentAndTheMovedStreamStillGoesOffline() async throws {
        let socket = FileManager.default.temporaryDirectory.appendingPathComponent("sse-presence-\(UUID().uuidString).sock").path
        defer { try? FileManager.default.removeItem(atPath: socket) }
        let hub = try await HubProcess.start(
            workers: 1, arguments: ["--presence-events", "--presence-grace", "1", "--control-socket", socket])
        defer { Task { try await hub.stop() } }
        #expect(try await hub.subscribe("watcher", ["room"]).status == 200)
        #expect(try await hub.subscribe("mover", ["room"]).status == 200)
        let watcher = try await hub.openStream("watcher")
        defer { Task { await watcher.close() } }
        let mover = try await hub.openStream("mover")
        try await watcher.waitForEvent("presence", count: 2)  // the watcher's own, then the mover's
        let before = try Self.decode(UserPresenceBody.self, try await Self.presence(hub, "userId=mover"))
        let reload = try await ChildProcess.run(
            HubProcess.buildDirectory.appendingPathComponent("sse-supervisor"), ["ctl", "reload", "--workers-only", "--socket", socket])
        #expect(reload.status == 0, "\(reload.output) \(reload.errors)")
        #expect(try await hub.publish(#"{"topic":"room","event":"after-reload","data":1}"#).status == 200)
        try await mover.waitForEvent("after-reload")
        let after = try Self.decode(UserPresenceBody.self, try await Self.presence(hub, "userId=mover"))
        #expect(after.online && after.since == before.since, "the moved stream keeps its opening time: \(before) \(after)")
        await mover.close()
        let seen = try await watcher.waitForEvent("presence", count: 3, timeout: .seconds(15))
        #expect(
            seen.map(\.data) == [
                #"{"online":true,"userId":"watcher"}"#, #"{"online":true,"userId":"mover"}"#, #"{"online":false,"userId":"mover"}"#,
            ], "\(seen)")
        #expect(watcher.events.map(\.event).firstIndex(of: "after-reload")! < watcher.events.lastIndex { $0.event == "presence" }!)
    }

    /// Across hosts presence is the hub's: a topic's users and a user's streams counted on every host, and a user's
    /// coming online and going offline published once, by the log, a move to another host within the grace silent.
    /// A worker that dies takes its streams out of the count (their users go offline after the grace).
    @Test func acrossHostsPresenceIsTheHubsAndAMoveWithinTheGraceIsSilent() async throws {
        let cluster = try await TestCluster.start(hosts: 2, workers: 1, arguments: ["--presence-events", "--presence-grace", "1"])
        defer { Task { await cluster.stop() } }
        let (a, b) = (cluster.hosts[0], cluster.hosts[1])
        let watcher = try await b.openStream("erin")
        #expect(try await a.subscribe("erin", ["room"]).status == 200)
        #expect(try await b.subscribe("frank", ["room"]).status == 200)

        let frank = try await b.openStream("frank")
        try await watcher.waitForEvent("presence")
        let room = try Self.decode(TopicPresenceBody.self, try await Self.presence(a, "topic=room"))
        #expect(room.users == [.init(userId: "erin", streams: 1), .init(userId: "frank", streams: 1)], "\(room)")
        let onB = try Self.decode(UserPresenceBody.self, try await Self.presence(a, "userId=frank"))
        #expect(onB.online && onB.streams == 1 && onB.topics == ["room"] && onB.since != nil)

        // Frank moves from B to A within the grace: nothing is published for the gap.
        await frank.close()
        let moved = try await a.openStream("frank")
        try await waitUntil("the hub to count frank's stream on A, and only it") {
            let user = try Self.decode(UserPresenceBody.self, try await Self.presence(b, "userId=frank"))
            let pending = try await cluster.postgres.query("SELECT count(*)::text FROM sse_hub.going_offline")
            return user.streams == 1 && pending == ["0"]
        }
        #expect(try await a.publish(#"{"topic":"room","event":"marker","data":1}"#).status == 200)
        try await watcher.waitForEvent("marker")
        #expect(try await a.publish(#"{"topic":"room","event":"marker","data":2}"#).status == 200)
        try await watcher.waitForEvent("marker", count: 2)
        #expect(watcher.events(named: "presence").map(\.data) == [#"{"online":true,"userId":"frank"}"#])

        // His worker on A dies with his stream: the hub stops counting it, and after the grace he is offline.
        #expect(try await moved.waitForEvent("marker", count: 2).count == 2)
        let worker = try #require(try await a.health().workers.first?.pid)
        kill(worker, SIGKILL)
        try await moved.waitForClose()
        let seen = try await watcher.waitForEvent("presence", count: 2, timeout: .seconds(20))
        #expect(seen.map(\.data) == [#"{"online":true,"userId":"frank"}"#, #"{"online":false,"userId":"frank"}"#])
        let room2 = try Self.decode(TopicPresenceBody.self, try await Self.presence(b, "topic=room"))
        #expect(room2.users == [.init(userId: "erin", streams: 1)], "\(room2)")
        let gone = try Self.decode(UserPresenceBody.self, try await Self.presence(b, "userId=frank"))
        #expect(!gone.online && gone.streams == 0 && gone.topics == ["room"])
        await cluster.stop()
    }
}
