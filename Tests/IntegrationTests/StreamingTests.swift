import Foundation
import Shared
import Testing

@Suite("Streams, topics and publishing through the real supervisor and workers", .serialized)
struct StreamingTests {
    @Test func streamsAreShardedAndEveryPublishReachesExactlyItsRecipients() async throws {
        let hub = try await HubProcess.start(workers: 3)
        defer { Task { try await hub.stop() } }

        // Enough users that every shard serves some of them.
        let users = (0..<12).map { "user-\($0)" }
        #expect(Set(users.map { ShardFunction.shard(for: $0, shardCount: 3) }).count == 3)
        var streams: [String: SSETestStream] = [:]
        for user in users { streams[user] = try await hub.openStream(user) }
        let connected = try #require(streams["user-0"]?.events(named: "connected").first)
        #expect(connected.data == #"{"message":"Connected to SSE stream","userId":"user-0"}"#)

        try await waitUntil("every stream counted") {
            let health = try await hub.health()
            return health.services.sse.totalClients == 12 && health.workers.allSatisfy { $0.clients > 0 }
        }

        // Topic subscribers: user-0, user-1 and user-2, whichever worker holds them.
        for user in ["user-0", "user-1", "user-2"] {
            let response = try await hub.subscribe(user, ["news"])
            #expect(response.status == 200)
            #expect(response.json["success"] == .bool(true))
            #expect(response.message == "Subscribed to topics")
            #expect(response.json["topics"] == .array([.string("news")]))
        }
        try await waitUntil("topic counts reported") { try await hub.stats().topics["news"] == 3 }

        #expect(try await hub.publish(#"{"event":"everyone","data":{"n":1}}"#).status == 200)
        #expect(try await hub.publish(#"{"event":"headline","topic":"news","data":{"title":"a/b"}}"#).status == 200)
        #expect(try await hub.publish(#"{"event":"direct","userId":"user-7","data":"only you"}"#).status == 200)
        // A marker after the others: once every stream has it, anything else would already have arrived.
        #expect(try await hub.publish(#"{"event":"marker","data":null}"#).status == 200)

        for (user, stream) in streams {
            try await stream.waitForEvent("marker")
            #expect(stream.events(named: "everyone").map(\.data) == [#"{"n":1}"#])
            let expectHeadline = ["user-0", "user-1", "user-2"].contains(user)
            #expect(stream.events(named: "headline").map(\.data) == (expectHeadline ? [#"{"title":"a/b"}"#] : []))
            #expect(stream.events(named: "direct").map(\.data) == (user == "user-7" ? [#""only you""#] : []))
        }

        let stats = try await hub.stats()
        #expect(stats == StatsSnapshot(totalClients: 12, totalTopics: 1, topics: ["news": 3]))
        let health = try await hub.health()
        #expect(health.status == "healthy")
        #expect(health.services.sse.totalClients == 12)
        #expect(health.services.sse.totalTopics == 1)
        for stream in streams.values { await stream.close() }
        try await waitUntil("closed streams uncounted") { try await hub.health().services.sse.totalClients == 0 }
        #expect(try await hub.stop() == 0)
    }

    @Test func aSecondStreamForAUserClosesTheFirst() async throws {
        let hub = try await HubProcess.start(workers: 3)
        defer { Task { try await hub.stop() } }
        let first = try await hub.openStream("alice")
        let second = try await hub.openStream("alice")
        try await first.waitForClose()
        #expect(first.connection.snapshot.ended, "the replaced stream ends its chunked body before closing")
        #expect(first.events.last?.event == "replaced" && first.events.last?.data == #"{"reason":"replaced"}"#, "told why, last")
        try await waitUntil("one stream counted") { try await hub.stats().totalClients == 1 }
        #expect(try await hub.publish(#"{"event":"hello","userId":"alice","data":1}"#).status == 200)
        try await second.waitForEvent("hello")
        #expect(!second.isClosed)
    }

    @Test func streamHeadersAndTheThreeTokenLocations() async throws {
        let hub = try await HubProcess.start(workers: 2)
        defer { Task { try await hub.stop() } }
        let query = try await SSETestStream.open(port: hub.port, target: "/api/sse/stream?token=\(try await hub.token("q"))")
        let bearer = try await SSETestStream.open(
            port: hub.port, target: "/api/sse/stream", headers: ["Authorization": "Bearer \(try await hub.token("b"))"])
        let header = try await SSETestStream.open(
            port: hub.port, target: "/api/sse/stream", headers: ["x-auth-token": try await hub.token("x")])
        for (stream, user) in [(query, "q"), (bearer, "b"), (header, "x")] {
            let connected = try await stream.waitForEvent("connected")
            #expect(connected.first?.data.contains(#""userId":"\#(user)""#) == true)
            let headers = stream.connection.snapshot.headers
            #expect(headers["content-type"] == "text/event-stream")
            #expect(headers["cache-control"] == "no-cache")
            #expect(headers["connection"] == "keep-alive")
            #expect(headers["x-accel-buffering"] == "no")
            #expect(headers["access-control-allow-origin"] == nil, "no CORS header unless configured")
        }
    }

    /// The supervisor reads a stream's head itself (the worker gets the answer's inputs with the descriptor):
    /// header names in any case, values with spaces around them, the first of repeated headers, and bytes the
    /// client sends after the head (a pipelined request, a body) are ignored rather than parsed as a request.
    @Test func aStreamsHeadIsReadByTheSupervisorWhateverFollowsIt() async throws {
        let hub = try await HubProcess.start(workers: 2, arguments: ["--cors-origin", "https://app.example"])
        defer { Task { try await hub.stop() } }
        let token = try await hub.token("dora")
        let head =
            "GET /api/sse/stream HTTP/1.1\r\nHost: x\r\nAUTHORIZATION:  Bearer \(token) \r\nauthorization: Bearer not-a-token\r\n"
            + "ORIGIN: https://app.example\r\nLast-Event-Id:\t\tnot-an-id\t\r\nAccept: text/event-stream\r\n\r\n"
        let connection = try await TestConnection.open(port: hub.port)
        try await connection.send(Array((head + "GET /api/health HTTP/1.1\r\nHost: x\r\n\r\nstray bytes").utf8))
        let stream = SSETestStream(connection: connection)
        let connected = try await stream.waitForEvent("connected")
        #expect(connected.first?.data.contains(#""userId":"dora""#) == true)
        let reset = try await stream.waitForEvent("reset")
        #expect(reset.first?.data.contains(#""lastEventId":"not-an-id""#) == true, "Last-Event-ID read, trimmed")
        #expect(connection.snapshot.headers["access-control-allow-origin"] == "https://app.example")
        try await connection.send(Array("more stray bytes".utf8))
        #expect(try await hub.publish(#"{"event":"after","userId":"dora","data":1}"#).status == 200)
        try await stream.waitForEvent("after")
        #expect(connection.snapshot.status == 200)
        #expect(!stream.isClosed)
        #expect(try await hub.health().status == "healthy")
    }

    /// While connections keep arriving, the accept thread lets more gather (`--accept-batch-us`, here 50 ms) before it
    /// looks again: whatever arrives meanwhile is served all the same (streams, a head whose end comes later, the
    /// supervisor's own answers).
    @Test func connectionsThatGatherWhileTheAcceptThreadWaitsAreAllServed() async throws {
        let hub = try await HubProcess.start(workers: 2, arguments: ["--accept-batch-us", "50000"])
        defer { Task { try await hub.stop() } }
        let split = try await TestConnection.open(port: hub.port)
        try await split.send(Array("GET /api/health HTTP/1.1\r\n".utf8))
        let users = (0..<40).map { "gathered-\($0)" }
        let streams = try await withThrowingTaskGroup(of: SSETestStream.self) { group in
            for user in users { group.addTask { try await hub.openStream(user) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        try await split.send(Array("Host: x\r\n\r\n".utf8))
        #expect(try await split.response().status == 200)
        try await waitUntil("every stream counted") { try await hub.health().services.sse.totalClients == users.count }
        #expect(try await hub.publish(#"{"event":"after","data":1}"#).status == 200)
        for stream in streams { try await stream.waitForEvent("after") }
        for stream in streams { await stream.close() }
    }

    /// The window gathers connections for the workers; the supervisor's own requests gain nothing from it. A publisher
    /// that publishes one event after another, each on a new connection, is not held a window per publish: with a
    /// 100 ms window, ten publishes in a row took about a second when it was (each arrived while the thread waited).
    /// Counted by the thread itself (`sse_hub_accept_batch_waits_total`), not timed, so a loaded machine cannot fail it.
    @Test func aPublisherPublishingInARowIsNotHeldByTheAcceptBatchWindow() async throws {
        let metricsPort = try HubProcess.freePort()
        let hub = try await HubProcess.start(
            workers: 1, arguments: ["--accept-batch-us", "100000", "--metrics-listen", "127.0.0.1:\(metricsPort)", "--keepalive-timeout", "0"])
        defer { Task { try await hub.stop() } }
        func waits() async throws -> Int? {
            let exposition = try await TestHTTP.request(port: metricsPort, "GET", "/metrics").text
            let line = exposition.split(separator: "\n").first { $0.hasPrefix("sse_hub_accept_batch_waits_total ") }
            return line.flatMap { Int($0.split(separator: " ")[1]) }
        }
        let stream = try await hub.openStream("reader")
        let before = try #require(try await waits())
        for n in 0..<10 {
            #expect(try await hub.publish(#"{"event":"row","userId":"reader","data":\#(n)}"#).status == 200)
        }
        #expect(try await waits() == before, "the accept thread waited after turns that only took publishes")
        let events = try await stream.waitForEvent("row", count: 10)
        #expect(events.map(\.data) == (0..<10).map { "\($0)" })
        // Connections for the workers, arriving together, still gather (and the count is live: this test can fail).
        let streams = try await withThrowingTaskGroup(of: SSETestStream.self) { group in
            for n in 0..<20 { group.addTask { try await hub.openStream("gathered-\(n)") } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(try #require(try await waits()) > before)
        for stream in streams + [stream] { await stream.close() }
    }

    @Test func anAcceptBatchWindowOutOfRangeIsRefusedAtStart() async throws {
        let run = try await ChildProcess.run(
            HubProcess.buildDirectory.appendingPathComponent("sse-supervisor"), ["--listen", "127.0.0.1:0", "--accept-batch-us", "100001"],
            environment: ["SSE_JWT_SECRET": HubProcess.secret])
        #expect(run.status == 64, "\(run.errors)")
        #expect(run.errors.contains("--accept-batch-us must be 0 to 100000"), "\(run.errors)")
    }

    @Test func topicsBelongToTheUserAndSurviveAReconnect() async throws {
        let hub = try await HubProcess.start(workers: 2)
        defer { Task { try await hub.stop() } }
        // Subscribing works with no stream open.
        #expect(try await hub.subscribe("carol", ["scores", "posts"]).status == 200)
        let unsubscribed = try await TestHTTP.request(
            port: hub.port, "POST", "/api/sse/unsubscribe",
            headers: ["Authorization": "Bearer \(try await hub.token("carol"))"], body: #"{"topics":["posts"]}"#)
        #expect(unsubscribed.status == 200)
        #expect(unsubscribed.message == "Unsubscribed from topics")
        #expect(unsubscribed.json["topics"] == .array([.string("posts")]))

        let stream = try await hub.openStream("carol")
        try await waitUntil("carol counted on scores") { try await hub.stats().topics == ["scores": 1] }
        await stream.close()
        try await waitUntil("carol gone") { try await hub.stats().totalClients == 0 }

        let again = try await hub.openStream("carol")
        try await waitUntil("carol counted again") { try await hub.stats().topics == ["scores": 1] }
        #expect(try await hub.publish(#"{"event":"goal","topic":"scores","data":{"home":1}}"#).status == 200)
        #expect(try await hub.publish(#"{"event":"post","topic":"posts","data":{}}"#).status == 200)
        #expect(try await hub.publish(#"{"event":"marker"}"#).status == 200)
        try await again.waitForEvent("marker")
        #expect(again.events(named: "goal").map(\.data) == [#"{"home":1}"#])
        #expect(again.events(named: "post").isEmpty)
    }

    @Test func heartbeatsArriveAtTheConfiguredInterval() async throws {
        let hub = try await HubProcess.start(workers: 1, arguments: ["--heartbeat", "1"])
        defer { Task { try await hub.stop() } }
        let stream = try await hub.openStream("dave")
        try await waitUntil("two heartbeats", timeout: .seconds(10)) {
            stream.connection.snapshot.parser.comments.filter { $0 == "heartbeat" }.count >= 2
        }
    }
}
