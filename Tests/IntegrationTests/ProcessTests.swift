import Foundation
import Shared
import Testing

@Suite("Processes: worker restarts, descriptors, connection reuse, shutdown", .serialized)
struct ProcessTests {
    /// Users on `shard` and users elsewhere.
    static func users(count: Int, shards: Int) -> [Int: [String]] {
        Dictionary(grouping: (0..<count).map { "member-\($0)" }) { ShardFunction.shard(for: $0, shardCount: shards) }
    }

    @Test func aKilledWorkerIsRestartedAndOnlyItsUsersNotice() async throws {
        let hub = try await HubProcess.start(workers: 3)
        defer { Task { try await hub.stop() } }
        let byShard = Self.users(count: 15, shards: 3)
        var streams: [String: SSETestStream] = [:]
        for user in byShard.values.joined() { streams[user] = try await hub.openStream(user) }
        try await waitUntil("all streams counted") { try await hub.health().services.sse.totalClients == 15 }

        let victim = try #require(try await hub.health().workers.first { $0.shard == 1 })
        let victimPID = try #require(victim.pid)
        kill(victimPID, SIGKILL)

        for user in byShard[1]! { try await streams[user]!.waitForClose() }
        try await waitUntil("the worker restarted") {
            let worker = try await hub.health().workers.first { $0.shard == 1 }
            return worker?.status == "up" && worker?.pid != victimPID && worker?.restarts == 1
        }
        // The exit logged as unexpected (an error, not the info of an exit at shutdown), with its worker and signal.
        #expect(!hub.logged("event=worker-exited", "worker=1", "pid=\(victimPID)", "status=signal 9", level: "error").isEmpty, "\(hub.log)")

        // Its users reconnect; everybody else never noticed.
        for user in byShard[1]! { streams[user] = try await hub.openStream(user) }
        #expect(try await hub.publish(#"{"event":"after","data":1}"#).status == 200)
        for (user, stream) in streams {
            try await stream.waitForEvent("after")
            #expect(!stream.isClosed)
            if !byShard[1]!.contains(user) {
                #expect(stream.events(named: "connected").count == 1, "\(user) kept its first stream")
            }
        }
        try await waitUntil("all streams counted again") { try await hub.health().services.sse.totalClients == 15 }
    }

    @Test func healthIsDegradedWhileAWorkerIsDown() async throws {
        // A worker path that fails after the first start: point at a copy, then remove it.
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sse-hub-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let worker = directory.appendingPathComponent("sse-worker")
        try FileManager.default.copyItem(at: HubProcess.buildDirectory.appendingPathComponent("sse-worker"), to: worker)
        let hub = try await HubProcess.start(workers: 2, arguments: ["--worker-path", worker.path])
        defer { Task { try await hub.stop() } }
        try FileManager.default.removeItem(at: worker)

        let pid = try #require(try await hub.health().workers[0].pid)
        kill(pid, SIGKILL)
        try await waitUntil("health degraded") {
            let response = try await TestHTTP.request(port: hub.port, "GET", "/api/health")
            return response.status == 503 && response.json["status"] == .string("degraded")
        }
        // The other worker still serves.
        let otherShardUser = (0..<100).map { "u\($0)" }.first { ShardFunction.shard(for: $0, shardCount: 2) == 1 }!
        _ = try await hub.openStream(otherShardUser)
    }

    @Test func theSupervisorHoldsNoClientConnections() async throws {
        let hub = try await HubProcess.start(workers: 2)
        defer { Task { try await hub.stop() } }
        func descriptors() throws -> Int {
            try FileManager.default.contentsOfDirectory(atPath: "/proc/\(hub.process.processIdentifier)/fd").count
        }
        let before = try descriptors()
        var streams: [SSETestStream] = []
        for index in 0..<60 { streams.append(try await hub.openStream("fd-\(index)")) }
        try await waitUntil("streams counted") { try await hub.health().services.sse.totalClients == 60 }
        // A few descriptors may come and go (health checks); 60 held streams would show.
        #expect(try descriptors() < before + 10)
    }

    /// A worker at its open-files limit cannot take a connection's descriptor: the kernel drops it, and with it
    /// the connection. The worker must say so (once a second, with a count and what to do), keep serving the
    /// streams it has, and take new ones once descriptors are free again.
    @Test func aWorkerOutOfDescriptorsLosesOnlyNewConnectionsAndSaysSo() async throws {
        let hub = try await HubProcess.start(workers: 1, openFilesLimit: 100)
        defer { Task { try await hub.stop() } }
        var streams: [SSETestStream] = []
        for index in 0..<120 {
            streams.append(try await SSETestStream.open(port: hub.port, target: "/api/sse/stream?token=\(try await hub.token("full-\(index)"))"))
        }
        try await waitUntil("every stream connected or closed") {
            streams.allSatisfy { !$0.events(named: "connected").isEmpty || $0.isClosed }
        }
        let connected = streams.filter { !$0.isClosed }
        #expect(connected.count > 50 && connected.count < 100, "\(connected.count) of 120 connected under a limit of 100")
        try await waitUntil("the loss logged") { !hub.logged("event=worker-out-of-descriptors").isEmpty }
        #expect(!hub.logged("event=worker-out-of-descriptors", "limit=RLIMIT_NOFILE", level: "error").isEmpty)
        #expect(try await hub.health().status == "healthy")
        #expect(try await hub.publish(#"{"event":"still","data":1}"#).status == 200)
        for stream in connected { try await stream.waitForEvent("still") }

        for stream in connected.prefix(20) { await stream.close() }
        try await waitUntil("closed streams uncounted") { try await hub.health().services.sse.totalClients == connected.count - 20 }
        _ = try await hub.openStream("after-the-storm")
    }

    /// Connections that reach a worker at its open-files limit together, in one hand-off message: the kernel installs
    /// the descriptors it has room for, in order, and drops the rest. The worker serves those that arrived, each with
    /// its own hand-off, and counts every other one as lost: none unaccounted for, none counted twice.
    @Test func aBatchToAWorkerOutOfDescriptorsServesWhatArrivedAndCountsTheRest() async throws {
        let hub = try await HubProcess.start(workers: 1, arguments: ["--accept-batch-us", "20000"], openFilesLimit: 100)
        defer { Task { try await hub.stop() } }
        var targets: [String] = []
        for index in 0..<120 { targets.append("/api/sse/stream?token=\(try await hub.token("batch-\(index)"))") }
        let streams = try await withThrowingTaskGroup(of: SSETestStream.self) { group in
            for target in targets { group.addTask { try await SSETestStream.open(port: hub.port, target: target) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        try await waitUntil("every stream connected or closed") {
            streams.allSatisfy { !$0.events(named: "connected").isEmpty || $0.isClosed }
        }
        let connected = streams.filter { !$0.isClosed }
        let lost = streams.count - connected.count
        #expect(lost > 0 && connected.count > 50, "\(connected.count) of 120 connected under a limit of 100")
        func logged() -> Int {
            hub.logged("event=worker-out-of-descriptors").compactMap { $0.value(of: "lost").flatMap { Int($0) } }.reduce(0, +)
        }
        try await waitUntil("every loss counted") { logged() >= lost }
        #expect(logged() == lost, "each lost connection counted once")
        try await waitUntil("the connected counted") { try await hub.health().services.sse.totalClients == connected.count }
        #expect(try await hub.publish(#"{"event":"still","data":1}"#).status == 200)
        for stream in connected { try await stream.waitForEvent("still") }
    }

    @Test func aConnectionServesOneUserRequestOnly() async throws {
        let hub = try await HubProcess.start(workers: 3)
        defer { Task { try await hub.stop() } }
        // Two users on different shards, pipelined on one connection as a pooling proxy might.
        let users = (0..<50).map { "pool-\($0)" }
        let first = users[0]
        let second = users.first { ShardFunction.shard(for: $0, shardCount: 3) != ShardFunction.shard(for: first, shardCount: 3) }!
        let connection = try await TestConnection.open(port: hub.port)
        let request =
            TestHTTP.requestBytes(
                "POST", "/api/sse/subscribe", headers: ["x-auth-token": try await hub.token(first)], body: #"{"topics":["one"]}"#)
            + TestHTTP.requestBytes(
                "POST", "/api/sse/subscribe", headers: ["x-auth-token": try await hub.token(second)], body: #"{"topics":["two"]}"#)
        try await connection.send(request)
        let response = try await connection.response()
        #expect(response.status == 200)
        #expect(response.headers["connection"] == "close")
        try await waitUntil("the connection closed") { connection.snapshot.closed }

        // The first user's subscription took; the second request was never served from the first user's shard.
        _ = try await hub.openStream(first)
        _ = try await hub.openStream(second)
        try await waitUntil("topics counted") { try await hub.stats().topics["one"] == 1 }
        #expect(try await hub.stats().topics["two"] == nil)
    }

    @Test func sigtermStopsEveryProcessAndClosesStreams() async throws {
        let hub = try await HubProcess.start(workers: 3)
        let pids = try await hub.health().workers.compactMap(\.pid)
        #expect(pids.count == 3)
        let stream = try await hub.openStream("leaving")
        #expect(try await hub.stop() == 0)
        try await stream.waitForClose()
        for pid in pids {
            #expect(kill(pid, 0) == -1 && errno == ESRCH, "worker \(pid) is gone")
        }
        // Written before the exit; the pipe's reader may still be delivering it.
        try await waitUntil("the last log line read") { !hub.logged("event=shutdown-done").isEmpty }
    }
}

@Suite("Start-up", .serialized)
struct StartupTests {
    @Test func takesItsListeningSocketFromSystemdSocketActivation() async throws {
        let port = try HubProcess.freePort()
        // The first connection (the health check in `start`) is what starts the supervisor.
        let hub = try await HubProcess.start(workers: 2, socketActivatedOn: port)
        // Stopped here, not in a deferred task that may run much later: `systemd-socket-activate` closes the socket by
        // which Foundation learns a child ended, so Foundation's one process thread waits (blocking `waitpid`) for this
        // supervisor to exit, and no other test's process is seen to end until then. A fresh-clone run where this hub
        // outlived its test timed out every later test that waited for a process to exit.
        do {
            #expect(hub.logged("event=listener-inherited", "name=http").count == 1)
            let stream = try await hub.openStream("activated")
            #expect(try await hub.publish(#"{"event":"hi","userId":"activated"}"#).status == 200)
            try await stream.waitForEvent("hi")
            await stream.close()
        } catch {
            kill(hub.process.processIdentifier, SIGKILL)
            throw error
        }
        #expect(try await hub.stop() == 0)
    }

    /// The README's quick start, as root on a fresh machine: no sse-hub user yet, so workers run as nobody.
    @Test(.enabled(if: geteuid() == 0 && getpwnam("sse-hub") == nil, "needs root and no sse-hub user"))
    func asRootWithoutTheServiceUserWorkersRunAsNobody() async throws {
        let hub = try await HubProcess.start(workers: 1, choosingWorkerUser: false)
        defer { Task { try await hub.stop() } }
        #expect(hub.logged("event=worker-user", "worker-user=nobody", level: "warning").count == 1)
        _ = try await hub.openStream("fresh-machine")
    }

    @Test func refusesToStartWithoutASecret() async throws {
        let outcome = try await ChildProcess.run(
            HubProcess.buildDirectory.appendingPathComponent("sse-supervisor"), ["--listen", "127.0.0.1:0"],
            environment: ProcessInfo.processInfo.environment.filter {
                $0.key != "SSE_JWT_SECRET" && $0.key != "CREDENTIALS_DIRECTORY"
            })
        #expect(outcome.status == 78)
        #expect(outcome.errors.contains("no JWT secret"))
    }
}
