import Foundation
import NIOCore
import Shared
import Synchronization

/// A real `sse-supervisor` (with its real `sse-worker`s) on an ephemeral loopback port.
final class HubProcess: Sendable {
    static let secret = "integration-test-secret-0123456789abcdef"

    let process: Process
    let port: Int
    private let output: ProcessOutput
    let signer: TokenSigner

    /// The build folder that holds the test bundle also holds the executables.
    static var buildDirectory: URL {
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: executable).deletingLastPathComponent()
    }

    /// Starts the supervisor on an ephemeral port; with `socketActivatedOn`, under `systemd-socket-activate`
    /// listening on that port, so the supervisor gets its socket the way systemd passes it (`LISTEN_FDS`); with
    /// `openFilesLimit`, under `prlimit --nofile` (the supervisor and its workers can open no more descriptors); with
    /// `supervisor`, from that path (an in-place upgrade re-executes what is installed there).
    static func start(
        workers: Int = 3, arguments: [String] = [], environment: [String: String] = [:], socketActivatedOn activationPort: Int? = nil,
        choosingWorkerUser: Bool = true, openFilesLimit: Int? = nil, supervisor: URL? = nil
    ) async throws -> HubProcess {
        let process = Process()
        let supervisor = supervisor ?? buildDirectory.appendingPathComponent("sse-supervisor")
        // A root supervisor runs its workers as `--user` (default sse-hub, which test machines lack).
        var arguments = arguments
        if choosingWorkerUser, geteuid() == 0, !arguments.contains("--user") { arguments += ["--user", "nobody"] }
        if let activationPort {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/systemd-socket-activate")
            process.arguments =
                ["--listen", "127.0.0.1:\(activationPort)", "--fdname=http", "-E", "SSE_JWT_SECRET", supervisor.path, "--workers", String(workers)]
                + arguments
        } else if let openFilesLimit {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/prlimit")  // sets the limit, then execs: same pid
            process.arguments =
                ["--nofile=\(openFilesLimit):\(openFilesLimit)", "--", supervisor.path, "--listen", "127.0.0.1:0", "--workers", String(workers)]
                + arguments
        } else {
            process.executableURL = supervisor
            process.arguments = ["--listen", "127.0.0.1:0", "--workers", String(workers)] + arguments
        }
        var env = ProcessInfo.processInfo.environment
        env["SSE_JWT_SECRET"] = secret
        env.removeValue(forKey: "LISTEN_FDS")
        env.removeValue(forKey: "LISTEN_PID")
        env.merge(environment) { $1 }
        process.environment = env
        let pipe = Pipe()
        process.standardError = pipe
        process.standardOutput = pipe
        let output = ProcessOutput()
        pipe.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            if !data.isEmpty { output.text.withLock { $0 += String(decoding: data, as: UTF8.self) } }
        }
        try process.run()
        var port: Int?
        try await waitUntil("the supervisor to listen") {
            guard process.isRunning else { throw TimedOut(description: "supervisor exited: \(output.text.withLock { $0 })") }
            port = activationPort ?? output.text.withLock { Self.listeningPort(in: $0) }
            return port != nil
        }
        let hub = HubProcess(process: process, port: port!, output: output, signer: await TokenSigner(secret: secret))
        try await hub.waitForHealthy(workers: workers)
        return hub
    }

    private init(process: Process, port: Int, output: ProcessOutput, signer: TokenSigner) {
        self.process = process
        self.port = port
        self.output = output
        self.signer = signer
    }

    /// A port that was free a moment ago (for `systemd-socket-activate`, which needs one named).
    static func freePort() throws -> Int {
        let fd = try ListeningSocket.bind(try SocketAddress(ipAddress: "127.0.0.1", port: 0))
        defer { Syscall.close(fd) }
        return try ListeningSocket.localAddress(of: fd).port!
    }

    private static func listeningPort(in log: String) -> Int? {
        guard let range = log.range(of: "listening on http://127.0.0.1:") else { return nil }
        return Int(log[range.upperBound...].prefix { $0.isNumber })
    }

    var log: String { output.text.withLock { $0 } }

    func token(_ userID: String?, publisher: Bool = false, lifetime: TimeInterval = 3600) async throws -> String {
        try await signer.sign(userID: userID, publisher: publisher, lifetime: lifetime)
    }

    func health() async throws -> HealthSnapshot {
        let response = try await TestHTTP.request(port: port, "GET", "/api/health")
        return try JSONDecoder().decode(HealthSnapshot.self, from: Data(response.body))
    }

    /// Up to 30 s: a hub starting beside other tests' servers on a loaded machine may take longer than most waits.
    func waitForHealthy(workers: Int) async throws {
        try await waitUntil("every worker up", timeout: .seconds(30)) {
            let health = try? await self.health()
            return health?.status == "healthy" && health?.workers.count == workers
        }
    }

    func stats() async throws -> StatsSnapshot {
        let response = try await TestHTTP.request(
            port: port, "GET", "/api/sse/stats", headers: ["Authorization": "Bearer \(try await token("backend", publisher: true))"])
        return try JSONDecoder().decode(StatsSnapshot.self, from: Data(response.body))
    }

    func publish(_ body: String) async throws -> TestHTTP.Response {
        try await TestHTTP.request(
            port: port, "POST", "/api/sse/publish",
            headers: ["x-auth-token": try await token("backend", publisher: true), "Content-Type": "application/json"], body: body)
    }

    func subscribe(_ userID: String, _ topics: [String]) async throws -> TestHTTP.Response {
        let body = String(decoding: try JSONEncoder().encode(["topics": topics]), as: UTF8.self)
        return try await TestHTTP.request(
            port: port, "POST", "/api/sse/subscribe",
            headers: ["x-auth-token": try await token(userID), "Content-Type": "application/json"], body: body)
    }

    func openStream(_ userID: String) async throws -> SSETestStream {
        let stream = try await SSETestStream.open(port: port, target: "/api/sse/stream?token=\(try await token(userID))")
        try await stream.waitForEvent("connected")
        return stream
    }

    /// SIGTERM, then waits for the exit; returns the exit status. A supervisor still running 20 s later is killed
    /// (its workers with it: they die with their parent), so no test leaves one behind holding a port, and the error
    /// says so, with the end of its log.
    @discardableResult
    func stop() async throws -> Int32 {
        if process.isRunning { process.terminate() }
        do {
            try await waitUntil("the supervisor to exit", timeout: .seconds(20)) { !self.process.isRunning }
        } catch {
            kill(process.processIdentifier, SIGKILL)
            try? await waitUntil("the killed supervisor to exit") { !self.process.isRunning }
            let tail = log.split(separator: "\n").suffix(30).joined(separator: "\n")
            throw TimedOut(description: "the supervisor did not exit within 20 s of SIGTERM (killed); its log ended:\n\(tail)")
        }
        return process.terminationStatus
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
        }
    }
}

struct HealthSnapshot: Decodable {
    struct Services: Decodable { var sse: Totals }
    struct Totals: Decodable {
        var totalClients: Int
        var totalTopics: Int
    }
    struct Worker: Decodable {
        var shard: Int
        var pid: Int32?
        var status: String
        var clients: Int
        var restarts: Int
    }
    struct Cluster: Decodable {
        struct Host: Decodable {
            var hostId: String
            var lastHeartbeatMsAgo: Int64
            var cursor: UInt64
            var totalClients: Int
        }
        var hostId: String
        var eventLog: String
        var error: String?
        var cursor: UInt64
        var hosts: [Host]
    }
    var status: String
    var services: Services
    var workers: [Worker]
    var cluster: Cluster?
}

struct StatsSnapshot: Decodable, Equatable {
    var totalClients: Int
    var totalTopics: Int
    var topics: [String: Int]
    var hosts: [String: HostTotals]?

    struct HostTotals: Decodable, Equatable {
        var totalClients: Int
        var totalTopics: Int
    }
}

/// Everything the supervisor and its workers wrote to stdout and stderr.
final class ProcessOutput: Sendable {
    let text = Mutex("")
}
