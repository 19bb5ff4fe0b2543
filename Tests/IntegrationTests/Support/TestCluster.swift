import Foundation
import Testing

/// Several real hosts (supervisors with their workers, each on its own loopback port) sharing one event log in a
/// private PostgreSQL server.
struct TestCluster: Sendable {
    let postgres: PostgresServer
    let hosts: [HubProcess]

    static func start(hosts count: Int = 3, workers: Int = 2, arguments: [String] = []) async throws -> TestCluster {
        let postgres = try await PostgresServer.start()
        var hosts: [HubProcess] = []
        for index in 0..<count { hosts.append(try await postgres.startHost(named: Self.name(index), workers: workers, arguments: arguments)) }
        return TestCluster(postgres: postgres, hosts: hosts)
    }

    static func name(_ index: Int) -> String { ["host-a", "host-b", "host-c", "host-d", "host-e"][index] }

    /// Stops every host, then the database (and removes its directory). Tests call it at their end: a `defer`'s
    /// task may not run before the test process exits, and a leaked cluster would load the tests after it. A host
    /// that does not stop on SIGTERM is a failure of the test (it is killed, so it leaks nothing either).
    func stop() async {
        for (index, host) in hosts.enumerated() {
            do { try await host.stop() } catch { Issue.record(error, "stopping \(Self.name(index))") }
        }
        try? await postgres.stopServer()
        postgres.removeDirectory()
    }
}

extension PostgresServer {
    /// A host of the hub whose log this server holds.
    func startHost(named name: String, workers: Int = 2, arguments: [String] = []) async throws -> HubProcess {
        try await HubProcess.start(workers: workers, arguments: ["--postgres-url", url, "--host-id", name, "--heartbeat", "1"] + arguments)
    }
}

extension HubProcess {
    /// Publishes `{"event": name, "data": {"n": n}}` (to everyone, a topic or a user) and expects it accepted.
    func publishNumbered(_ name: String, _ n: Int, topic: String? = nil, userID: String? = nil) async throws -> TestHTTP.Response {
        var body = #"{"event":"\#(name)","data":{"n":\#(n)}"#
        if let topic { body += #","topic":"\#(topic)""# }
        if let userID { body += #","userId":"\#(userID)""# }
        return try await publish(body + "}")
    }
}
