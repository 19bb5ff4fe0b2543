import Foundation
import Shared
import Testing

/// The defects a hostile-input probe found (issue 9), each reproduced through the real supervisor and workers:
/// before its fix each one crashed a process, corrupted an event or lost a subscription.
@Suite("Hostile input: no token, header, payload or user crashes a process or corrupts an event", .serialized)
struct HostileInputTests {
    /// A stream that must outlive whatever a test throws at the hub: it still receives a broadcast afterwards.
    func expectAlive(_ bystander: SSETestStream, hub: HubProcess, _ label: String) async throws {
        #expect(hub.process.isRunning, "the supervisor survived \(label)")
        let before = bystander.events(named: "alive").count
        #expect(try await hub.publish(#"{"event":"alive","data":{"after":"\#(label)"}}"#).status == 200)
        try await bystander.waitForEvent("alive", count: before + 1)
        #expect(!bystander.isClosed)
    }

    @Test func anExpiryThatFitsNoIntegerIsA401() async throws {
        let hub = try await HubProcess.start(workers: 2)
        defer { Task { try await hub.stop() } }
        let bystander = try await hub.openStream("bystander")
        for exp in ["9223372036854775808", "1e300", "-1e300", "18446744073709551616"] {
            let token = ErrorTests.token(alg: "HS256", secret: HubProcess.secret, claims: #"{"sub":"u1","exp":\#(exp)}"#)
            for target in ["/api/sse/stream?token=\(token)", "/api/sse/stats?token=\(token)"] {
                let response = try await TestHTTP.request(port: hub.port, "GET", target)
                #expect(response.status == 401, "exp \(exp) on \(target.prefix(16))")
                #expect(response.message == "Token is not valid")
            }
            try await expectAlive(bystander, hub: hub, "exp \(exp)")
        }
    }

    @Test func headersAHandoffCannotCarryAreA431() async throws {
        let hub = try await HubProcess.start(workers: 2, arguments: ["--max-head-bytes", "262144"])
        defer { Task { try await hub.stop() } }
        let bystander = try await hub.openStream("bystander")
        let token = try await hub.token("u1")
        let long = String(repeating: "9", count: 60_000)
        for headers in [["Last-Event-ID": long, "Origin": "https://" + long], ["Last-Event-ID": long], ["Origin": "https://" + long]] {
            let response = try await TestHTTP.request(port: hub.port, "GET", "/api/sse/stream?token=\(token)", headers: headers)
            #expect(response.status == 431, "\(headers.keys.sorted())")
            #expect(response.json["success"] == .bool(false))
            #expect(response.message?.hasPrefix("Request header fields too large") == true)
            try await expectAlive(bystander, hub: hub, headers.keys.sorted().joined(separator: " and ") + " of 60 KB")
        }
        // At the bound it is carried: an id that long is unknown, so the stream starts with a reset that echoes it.
        let longest = String(repeating: "7", count: Handoff.maximumHeaderValueBytes)
        let stream = try await SSETestStream.open(port: hub.port, target: "/api/sse/stream?token=\(token)", headers: ["Last-Event-ID": longest])
        let reset = try await stream.waitForEvent("reset")
        #expect(try JSONDecoder().decode(ResetEventData.self, from: Data(reset[0].data.utf8)).lastEventId == longest)
        await stream.close()
    }

    /// U+2028, U+2029 and U+0085 used to split `data:` lines: the browser then joined them with a newline inside a
    /// JSON string. Every event a client gets must parse, whatever strings it carries.
    @Test func lineSeparatorsInStringsNeverSplitAnEvent() async throws {
        let hub = try await HubProcess.start(workers: 2)
        defer { Task { try await hub.stop() } }
        let userID = "line\u{2028}sep\u{0085}user"
        let token = try await hub.token(userID)
        let oddID = "x\u{2029}y"
        let stream = try await SSETestStream.open(
            port: hub.port,
            target: "/api/sse/stream?token=\(token)&lastEventId=\(oddID.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)")
        let connected = try await stream.waitForEvent("connected")
        #expect(try JSONDecoder().decode(ConnectedEventData.self, from: Data(connected[0].data.utf8)).userId == userID)
        let reset = try await stream.waitForEvent("reset")
        #expect(try JSONDecoder().decode(ResetEventData.self, from: Data(reset[0].data.utf8)).lastEventId == oddID)
        let text = "a\u{2028}b\u{2029}c\u{0085}d\r\ne\nf"
        let body = String(decoding: try JSONEncoder().encode(["event": "post", "userId": userID, "data": text]), as: UTF8.self)
        #expect(try await hub.publish(body).status == 200)
        #expect(try await hub.publish(#"{"event":"post","data":{"t":"\u2028\u2029\u0085"}}"#).status == 200)
        let posts = try await stream.waitForEvent("post", count: 2)
        #expect(try JSONDecoder().decode(String.self, from: Data(posts[0].data.utf8)) == text)
        #expect(try JSONDecoder().decode([String: String].self, from: Data(posts[1].data.utf8)) == ["t": "\u{2028}\u{2029}\u{0085}"])
        let raw = String(decoding: stream.connection.snapshot.body, as: UTF8.self)
        #expect(!raw.contains("data: b"), "no data line starts inside a string")
        await stream.close()
    }

    /// A worker's crash used to forget its users' topics: a resumed subscriber got none of its topic's events.
    @Test func subscriptionsSurviveAWorkerCrashLikeTheHistory() async throws {
        let hub = try await HubProcess.start(workers: 2)
        defer { Task { try await hub.stop() } }
        let streaming = "crash-streaming"
        let shard = ShardFunction.shard(for: streaming, shardCount: 2)
        let idle = try #require((0..<100).map { "crash-idle-\($0)" }.first { ShardFunction.shard(for: $0, shardCount: 2) == shard })
        #expect(try await hub.subscribe(streaming, ["alerts"]).status == 200)
        #expect(try await hub.subscribe(idle, ["quiet"]).status == 200)
        let first = try await hub.openStream(streaming)
        #expect(try await hub.publish(#"{"event":"alert","topic":"alerts","data":{"n":0}}"#).status == 200)
        let lastID = try #require(try await first.waitForEvent("alert").last?.id)
        try await waitUntil("the topic counted") { try await hub.stats().topics["alerts"] == 1 }

        let victim = try #require(try await hub.health().workers.first { $0.shard == shard }?.pid)
        kill(victim, SIGKILL)
        try await first.waitForClose()
        for n in 1...3 { #expect(try await hub.publish(#"{"event":"alert","topic":"alerts","data":{"n":\#(n)}}"#).status == 200) }
        try await waitUntil("the worker restarted") {
            let health = try await hub.health()
            return health.status == "healthy" && health.workers.first { $0.shard == shard }?.restarts == 1
        }
        let resumed = try await SSETestStream.open(
            port: hub.port, target: "/api/sse/stream?token=\(try await hub.token(streaming))", headers: ["Last-Event-ID": lastID])
        try await resumed.waitForEvent("alert", count: 3)
        #expect(try await hub.publish(#"{"event":"alert","topic":"alerts","data":{"n":4}}"#).status == 200)
        let alerts = try await resumed.waitForEvent("alert", count: 4)
        #expect(alerts.map(\.data) == (1...4).map { #"{"n":\#($0)}"# }, "missed, then live")
        try await waitUntil("the topic counted again") { try await hub.stats().topics["alerts"] == 1 }
        // A user who held a topic with no stream open keeps it too.
        let late = try await hub.openStream(idle)
        #expect(try await hub.publish(#"{"event":"hush","topic":"quiet","data":1}"#).status == 200)
        try await late.waitForEvent("hush")
        try await waitUntil("both topics counted") { try await hub.stats().topics == ["alerts": 1, "quiet": 1] }
        await resumed.close()
        await late.close()
    }

    /// One user subscribing to ever more topics grew a worker to 267 MB and got it killed: a per-user bound, a
    /// clear answer past it, and nothing of a refused request applied.
    @Test func oneUserCannotHoldMoreThanTheTopicLimit() async throws {
        let hub = try await HubProcess.start(workers: 2, arguments: ["--max-topics-per-user", "150"])
        defer { Task { try await hub.stop() } }
        func names(_ range: Range<Int>) -> [String] { range.map { "t\($0)" } }
        let stream = try await hub.openStream("greedy")
        #expect(try await hub.subscribe("greedy", names(0..<100)).status == 200)
        #expect(try await hub.subscribe("greedy", names(90..<141)).status == 200, "41 new: 141 held")
        let over = try await hub.subscribe("greedy", names(141..<151))  // 10 new would make 151
        #expect(over.status == 409)
        #expect(over.json["success"] == .bool(false))
        #expect(over.message == "A user may hold at most 150 topics; unsubscribe from some first")
        try await waitUntil("141 topics counted") { try await hub.stats().totalTopics == 141 }
        #expect(try await hub.stats().topics["t141"] == nil, "nothing of the refused request applied")
        #expect(try await hub.subscribe("greedy", names(41..<141)).status == 200, "topics already held cost nothing")
        #expect(try await hub.subscribe("greedy", names(141..<150)).status == 200)
        #expect(try await hub.subscribe("greedy", ["one-more"]).status == 409)
        #expect(try await hub.subscribe("other-user", ["one-more"]).status == 200, "the bound is per user")
        // Stats count connected subscribers: the other user has no stream.
        try await waitUntil("150 topics counted") { try await hub.stats().totalTopics == 150 }
        #expect(try await hub.health().status == "healthy")
        await stream.close()
    }

    /// A user with 700 topics of 128 characters made a reload close their stream and a neighbour's, and lose the
    /// neighbour's topic: migration must carry whatever the limits allow.
    @Test func aReloadMovesUsersWithManyLongTopics() async throws {
        let hub = try await HubProcess.start(workers: 2, arguments: ["--max-topics-per-user", "1000"])
        defer { Task { try await hub.stop() } }
        let heavy = "heavy-user"
        let shard = ShardFunction.shard(for: heavy, shardCount: 2)
        let neighbour = try #require((0..<100).map { "neighbour-\($0)" }.first { ShardFunction.shard(for: $0, shardCount: 2) == shard })
        let topics = (0..<700).map { String(format: "%03d", $0) + String(repeating: "x", count: 125) }
        for start in stride(from: 0, to: 700, by: 100) {
            #expect(try await hub.subscribe(heavy, Array(topics[start..<(start + 100)])).status == 200)
        }
        #expect(try await hub.subscribe(neighbour, ["next-door"]).status == 200)
        let heavyStream = try await hub.openStream(heavy)
        let neighbourStream = try await hub.openStream(neighbour)
        try await waitUntil("701 topics counted") { try await hub.stats().totalTopics == 701 }
        let pids = Set(try await hub.health().workers.compactMap(\.pid))

        kill(hub.process.processIdentifier, SIGHUP)
        try await waitUntil("the reload done", timeout: .seconds(60)) { !hub.logged("event=reload-done").isEmpty }
        #expect(Set(try await hub.health().workers.compactMap(\.pid)).isDisjoint(with: pids))
        #expect(try await hub.publish(#"{"event":"deep","topic":"\#(topics[699])","data":1}"#).status == 200)
        #expect(try await hub.publish(#"{"event":"near","topic":"next-door","data":2}"#).status == 200)
        try await heavyStream.waitForEvent("deep")
        try await neighbourStream.waitForEvent("near")
        for stream in [heavyStream, neighbourStream] {
            #expect(!stream.isClosed)
            #expect(stream.events(named: "connected").count == 1, "the same stream, never reconnected")
        }
        try await waitUntil("701 topics counted on the new workers") { try await hub.stats().totalTopics == 701 }
        await heavyStream.close()
        await neighbourStream.close()
    }

    /// The history was bounded by count only: 10,000 events of 60 KB made the supervisor hold 2 GB. Bounded by bytes
    /// now; a client whose last id fell out gets `reset`, one within the bound its missed events.
    @Test func theHistoryIsBoundedByBytes() async throws {
        let hub = try await HubProcess.start(workers: 2, arguments: ["--history-bytes", "1048576"])
        defer { Task { try await hub.stop() } }
        let watcher = try await hub.openStream("watcher")
        let payload = String(repeating: "p", count: 60_000)
        for n in 0..<40 {
            #expect(try await hub.publish(#"{"event":"big","data":{"n":\#(n),"p":"\#(payload)"}}"#).status == 200)
        }
        let seen = try await watcher.waitForEvent("big", count: 40)
        let token = try await hub.token("watcher")
        let fromStart = try await SSETestStream.open(
            port: hub.port, target: "/api/sse/stream?token=\(token)", headers: ["Last-Event-ID": try #require(seen[0].id)])
        try await fromStart.waitForEvent("reset")
        #expect(fromStart.events(named: "big").isEmpty, "nothing replayed across a gap")
        let recent = try await SSETestStream.open(
            port: hub.port, target: "/api/sse/stream?token=\(token)", headers: ["Last-Event-ID": try #require(seen[37].id)])
        let replayed = try await recent.waitForEvent("big", count: 2)
        #expect(replayed.map(\.id) == [seen[38].id, seen[39].id])
        #expect(recent.events(named: "reset").isEmpty)
        await recent.close()
    }

    /// Publishes used to queue for a worker without bound (2 GB seen). A worker that stops reading is now held to
    /// `--worker-backlog-bytes`; once it reads again it catches up from the history, in order, losing nothing.
    @Test func aLaggingWorkerCatchesUpFromTheHistory() async throws {
        let hub = try await HubProcess.start(workers: 1, arguments: ["--worker-backlog-bytes", "262144"])
        defer { Task { try await hub.stop() } }
        let reader = try await hub.openStream("reader")
        let worker = try #require(try await hub.health().workers.first?.pid)
        let payload = String(repeating: "p", count: 30_000)
        kill(worker, SIGSTOP)
        // Three times the backlog, and quickly: a worker stopped past the liveness bound (5 s) would be killed, which
        // is another test's subject (a loaded machine made 60 publishes take that long).
        for n in 0..<30 { #expect(try await hub.publish(#"{"event":"bulk","data":{"n":\#(n),"p":"\#(payload)"}}"#).status == 200) }
        try await waitUntil("the worker marked lagging") { hub.log.contains("event=worker-lagging") }
        kill(worker, SIGCONT)
        let events = try await reader.waitForEvent("bulk", count: 30, timeout: .seconds(20))
        let numbers = try events.map { try JSONDecoder().decode([String: JSONValue].self, from: Data($0.data.utf8))["n"] }
        #expect(numbers == (0..<30).map { JSONValue.integer(Int64($0)) }, "every event, in order, once")
        try await waitUntil("caught up") { hub.log.contains("event=worker-caught-up") }
        #expect(try await hub.health().workers.first?.restarts == 0)
        #expect(!reader.isClosed && reader.events(named: "connected").count == 1)
        await reader.close()
    }

    /// A worker that missed more than the history holds cannot catch up: it is restarted, and a client whose
    /// events are gone learns it from `reset` when it resumes. Never silent loss.
    @Test func aWorkerBehindTheWholeHistoryIsRestartedAndItsClientsReset() async throws {
        let hub = try await HubProcess.start(
            workers: 1, arguments: ["--worker-backlog-bytes", "262144", "--history-bytes", "1048576"])
        defer { Task { try await hub.stop() } }
        let reader = try await hub.openStream("reader")
        #expect(try await hub.publish(#"{"event":"bulk","data":{"n":-1}}"#).status == 200)
        let lastSeen = try #require(try await reader.waitForEvent("bulk").last?.id)
        let worker = try #require(try await hub.health().workers.first?.pid)
        let payload = String(repeating: "p", count: 30_000)
        kill(worker, SIGSTOP)
        for n in 0..<60 { #expect(try await hub.publish(#"{"event":"bulk","data":{"n":\#(n),"p":"\#(payload)"}}"#).status == 200) }
        kill(worker, SIGCONT)
        try await waitUntil("the worker restarted", timeout: .seconds(20)) {
            let restarts = try await hub.health().workers.first?.restarts
            return hub.log.contains("event=worker-fell-behind") && restarts == 1
        }
        try await reader.waitForClose()
        let resumed = try await SSETestStream.open(
            port: hub.port, target: "/api/sse/stream?token=\(try await hub.token("reader"))", headers: ["Last-Event-ID": lastSeen])
        try await resumed.waitForEvent("reset")
        #expect(try await hub.publish(#"{"event":"bulk","data":{"n":60}}"#).status == 200)
        #expect(try await resumed.waitForEvent("bulk").map(\.data) == [#"{"n":60}"#], "live again after the reset")
        await resumed.close()
    }

    /// A request whose body never comes held its connection for good on a worker (a handed-off subscribe), and
    /// for 30 s after it was answered in the supervisor (the timer kept the closed channel and its body alive).
    /// Each is answered 408 once `--request-timeout` passes, and the server keeps serving.
    @Test func aBodyThatNeverComesIsA408() async throws {
        let hub = try await HubProcess.start(workers: 2, arguments: ["--request-timeout", "1"])
        defer { Task { try await hub.stop() } }
        let bystander = try await hub.openStream("bystander")
        let user = try await hub.token("slow-user")
        let publisher = try await hub.token("backend", publisher: true)
        for (target, token) in [("/api/sse/subscribe", user), ("/api/sse/unsubscribe", user), ("/api/sse/publish", publisher)] {
            let connection = try await TestConnection.open(port: hub.port)
            try await connection.send(
                Array("POST \(target) HTTP/1.1\r\nHost: x\r\nx-auth-token: \(token)\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"to".utf8))
            let response = try await connection.response(timeout: .seconds(10))
            #expect(response.status == 408, "\(target)")
            #expect(response.message == "Request not received in time", "\(target)")
            await connection.close()
        }
        try await expectAlive(bystander, hub: hub, "bodies that never came")
        #expect(try await hub.subscribe("slow-user", ["after"]).status == 200)
    }
}
