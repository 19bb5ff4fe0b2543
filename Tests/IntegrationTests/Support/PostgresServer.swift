import Foundation
import Logging
import NIOCore
import PostgresNIO
import Synchronization

/// A private PostgreSQL server for one test: Debian's `postgresql` binaries, a data directory of its own under
/// /tmp and a port of its own on loopback, run as the `postgres` user (PostgreSQL refuses to run as root), trust
/// authentication on loopback only. Stopped (and its directory removed) when the test ends; a test may also stop,
/// kill and restart it, which is how the faults are made.
final class PostgresServer: Sendable {
    let port: Int
    let directory: URL
    private let process = Mutex<Process?>(nil)
    private let output = ProcessOutput()

    /// The URL the hosts are given.
    var url: String { "postgres://postgres@127.0.0.1:\(port)/postgres?sslmode=disable" }

    var log: String { output.text.withLock { $0 } }

    /// The newest installed PostgreSQL's programs (`/usr/lib/postgresql/<version>/bin`).
    static let binDirectory: URL = {
        let root = URL(fileURLWithPath: "/usr/lib/postgresql")
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []).compactMap(Int.init).sorted()
        guard let newest = versions.last else { return root }
        return root.appendingPathComponent("\(newest)/bin")
    }()

    /// Creates the cluster (`initdb`) and starts the server.
    static func start() async throws -> PostgresServer {
        guard FileManager.default.isExecutableFile(atPath: binDirectory.appendingPathComponent("postgres").path) else {
            throw TimedOut(description: "PostgreSQL is not installed (scripts/test.sh installs Debian's postgresql)")
        }
        let directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("sse-hub-pg-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let server = PostgresServer(port: try HubProcess.freePort(), directory: directory)
        if geteuid() == 0 {
            try await ChildProcess.run(URL(fileURLWithPath: "/bin/chown"), ["postgres:postgres", directory.path]).check("chown")
        }
        try await ChildProcess.run(
            asPostgres(binDirectory.appendingPathComponent("initdb")),
            asPostgresArguments(binDirectory.appendingPathComponent("initdb")) + [
                "-D", server.dataDirectory.path, "--auth=trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C",
            ]
        ).check("initdb")
        try await server.startServer()
        return server
    }

    private init(port: Int, directory: URL) {
        self.port = port
        self.directory = directory
    }

    private var dataDirectory: URL { directory.appendingPathComponent("data") }

    /// As root, programs run through `setpriv` as `postgres` (it execs, so the pid is the server's own).
    private static func asPostgres(_ program: URL) -> URL {
        geteuid() == 0 ? URL(fileURLWithPath: "/usr/bin/setpriv") : program
    }

    private static func asPostgresArguments(_ program: URL) -> [String] {
        geteuid() == 0 ? ["--reuid=postgres", "--regid=postgres", "--init-groups", "--", program.path] : []
    }

    /// Starts the server on its data directory and port, and waits until it takes connections.
    func startServer() async throws {
        let program = Self.binDirectory.appendingPathComponent("postgres")
        let server = Process()
        server.executableURL = Self.asPostgres(program)
        server.arguments =
            Self.asPostgresArguments(program) + [
                "-D", dataDirectory.path, "-p", String(port), "-c", "listen_addresses=127.0.0.1", "-c",
                "unix_socket_directories=\(directory.path)", "-c", "fsync=off", "-c", "synchronous_commit=off", "-c",
                "max_connections=200",
            ]
        // fsync=off: the machine does not crash in a test, and what the server wrote survives its own crash in the
        // page cache. synchronous_commit=off is the fastest and least safe default a server can have: the hub asks
        // for durable commits itself, and the restart test shows that it does.
        let pipe = Pipe()
        server.standardOutput = pipe
        server.standardError = pipe
        pipe.fileHandleForReading.readabilityHandler = { [output] handle in
            let data = handle.availableData
            if !data.isEmpty { output.text.withLock { $0 += String(decoding: data, as: UTF8.self) } }
        }
        try server.run()
        process.withLock { $0 = server }
        try await waitUntil("PostgreSQL to take connections", timeout: .seconds(30), poll: .milliseconds(50)) {
            guard server.isRunning else { throw TimedOut(description: "postgres exited: \(self.log)") }
            return (try? await self.query("SELECT 1")) != nil
        }
    }

    /// Stops the server: `fast` (SIGINT: sessions are ended, then a clean shutdown) or `immediate` (SIGQUIT: a crash,
    /// recovered at the next start).
    func stopServer(immediate: Bool = false) async throws {
        guard let server = process.withLock({ $0 }) else { return }
        if server.isRunning { kill(server.processIdentifier, immediate ? SIGQUIT : SIGINT) }
        try await waitUntil("PostgreSQL to stop", timeout: .seconds(30)) { !server.isRunning }
        process.withLock { $0 = nil }
    }

    /// Runs `sql` on a new connection and returns the first column of each row, which must be text (cast it:
    /// `count(*)::text`); a statement that returns no rows gives none.
    @discardableResult
    func query(_ sql: String) async throws -> [String?] {
        try await withConnection { connection in
            let rows = try await connection.query(PostgresQuery(unsafeSQL: sql), logger: Self.logger)
            var values: [String?] = []
            for try await row in rows { values.append(try row.decode(String?.self)) }
            return values
        }
    }

    func withConnection<Value>(_ body: (PostgresConnection) async throws -> Value) async throws -> Value {
        let configuration = PostgresConnection.Configuration(
            host: "127.0.0.1", port: port, username: "postgres", password: nil, database: "postgres", tls: .disable)
        let connection = try await PostgresConnection.connect(configuration: configuration, id: 1, logger: Self.logger)
        do {
            let value = try await body(connection)
            try await connection.close()
            return value
        } catch {
            try? await connection.close()
            throw error
        }
    }

    static let logger = Logger(label: "test-postgres")

    func removeDirectory() {
        try? FileManager.default.removeItem(at: directory)
    }

    deinit {
        if let server = process.withLock({ $0 }), server.isRunning {
            kill(server.processIdentifier, SIGQUIT)
            server.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: directory)
    }
}

extension ChildProcess.Outcome {
    /// Throws with what the program printed unless it exited 0.
    @discardableResult
    func check(_ what: String) throws -> Self {
        guard status == 0 else { throw TimedOut(description: "\(what) failed (\(status)): \(output)\(errors)") }
        return self
    }
}
