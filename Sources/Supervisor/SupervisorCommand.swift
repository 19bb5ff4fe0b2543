import ArgumentParser
import Foundation
import Logging
import NIOCore
import KeySources
import PostgresLog
import ServiceLifecycle
import Shared
import SupervisorCore

@main
struct SupervisorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sse-supervisor",
        abstract: "sse-hub: a Server-Sent Events hub. The supervisor owns the listening sockets and hands each connection to a worker process.",
        version: Release.version,
        subcommands: [Serve.self, MintToken.self, OperatorCommand.self, UpgradeCheckCommand.self],
        defaultSubcommand: Serve.self
    )
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the server (the default).")

    @Option(name: .customLong("listen"), help: "HOST:PORT to listen on when systemd passes no socket (repeatable).")
    var listenAddresses: [String] = ["127.0.0.1:8080"]

    @Option(help: "Unix socket for the operator's API (`sse-supervisor ctl`) when systemd passes none; mode 0660.")
    var controlSocket: String?

    @Option(
        help: ArgumentHelp(
            "HOST:PORT for /metrics (Prometheus), /status and /status/events, apart from the public port, when systemd passes no socket named metrics; off by default. Bind it to a private address: it asks for no token.",
            valueName: "host:port"))
    var metricsListen: String?

    @Option(help: "Worker processes (default: the number of cores).")
    var workers: Int = System.coreCount

    @Option(help: "The sse-worker executable (default: beside sse-supervisor).")
    var workerPath: String?

    @OptionGroup var auth: AuthOptions

    @Option(help: "Seconds a client has to send its request head.")
    var headTimeout: Int = 10

    @Option(help: "Largest request head accepted, in bytes (larger: 431).")
    var maxHeadBytes: Int = 8192

    @Option(help: "Users' tokens the accept thread remembers as verified (by digest, each until its exp), so a reconnect storm skips their verification; 0 turns it off.")
    var tokenCacheSize: Int = 65_536

    @Option(help: "Microseconds the accept thread lets new connections gather after a turn that took some, while they keep arriving, so that each wake-up of the supervisor and of a worker serves several; at most this is added to a connection's set-up; 0 turns it off.")
    var acceptBatchUs: Int = 3000

    @Option(help: "Seconds a publisher's connection may stay open, idle, for its next request (a publish, stats or presence request with a publisher's token keeps it); 0 closes every connection after its answer.")
    var keepaliveTimeout: Int = 30

    @Option(help: "Seconds a worker may leave the supervisor's pings unanswered before it is killed as hung and restarted (an overloaded host delays healthy workers by seconds).")
    var workerHangTimeout: Int = 15

    @Option(help: "Milliseconds a connection waits for its worker (restarting, or its queue full) before it is turned away.")
    var workerWaitMs: Int = 5000

    @Option(help: "Milliseconds before a worker that died is started again, doubling with each death in a row up to 10 s (a worker that ran 30 s starts the count over).")
    var workerRestartDelayMs: Int = 100

    @Option(help: "Bytes of publishes that may wait for one worker to read them; past it the worker catches up from the history once it has drained.")
    var workerBacklogBytes: Int = 8 * 1024 * 1024

    @OptionGroup var clientLimits: ClientLimitOptions

    @Option(help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: Logger.Level = .info

    @Option(help: "When started as root: the user the workers run as (default sse-hub; nobody, with a warning, where sse-hub does not exist).")
    var user: String?

    @OptionGroup var stream: StreamOptions

    @OptionGroup var cluster: ClusterOptions

    func validate() throws {
        guard (1...256).contains(workers) else { throw ValidationError("--workers must be 1 to 256") }
        guard headTimeout > 0 else { throw ValidationError("--head-timeout must be positive") }
        guard (0...100_000).contains(acceptBatchUs) else { throw ValidationError("--accept-batch-us must be 0 to 100000") }
        guard (0...10_000_000).contains(tokenCacheSize) else { throw ValidationError("--token-cache-size must be 0 to 10000000") }
        guard (0...3600).contains(keepaliveTimeout) else { throw ValidationError("--keepalive-timeout must be 0 to 3600 seconds") }
        guard (3...600).contains(workerHangTimeout) else { throw ValidationError("--worker-hang-timeout must be 3 to 600 seconds") }
        guard workerWaitMs >= 0 else { throw ValidationError("--worker-wait-ms must not be negative") }
        guard (10...10_000).contains(workerRestartDelayMs) else { throw ValidationError("--worker-restart-delay-ms must be 10 to 10000") }
        guard (512...1_048_576).contains(maxHeadBytes) else { throw ValidationError("--max-head-bytes must be 512 to 1048576") }
        guard (65_536...(1 << 30)).contains(workerBacklogBytes) else { throw ValidationError("--worker-backlog-bytes must be 64 KiB to 1 GiB") }
    }

    func run() async throws {
        // First, before anything opens a descriptor: what the parent gave this process, and the state an in-place
        // upgrade handed to this program, if it did.
        let inherited = UpgradeStateFile.inheritedDescriptors()
        let resuming: UpgradeState?
        do {
            resuming = try UpgradeStateFile.takeOver()
        } catch {
            FileHandle.standardError.write(Data("sse-supervisor: cannot take over after an in-place upgrade: \(error)\n".utf8))
            throw ExitCode(1)
        }
        HubLogging.bootstrap(identifier: "sse-supervisor", level: logLevel)
        let logger = Logger(label: "sse-supervisor")
        Syscall.ignoreSIGPIPE()

        let verifier: TokenVerifier
        var keySources: [any Service] = []
        do {
            (verifier, keySources) = try auth.verifier(logger: logger)
        } catch {
            logger.critical("\(error)", metadata: ["event": "auth-refused"])
            throw ExitCode(78)  // EX_CONFIG
        }
        let workerExecutable = try workerPath ?? Self.siblingWorkerPath()
        guard FileManager.default.isExecutableFile(atPath: workerExecutable) else {
            logger.critical("the worker executable is missing or not executable", metadata: ["path": "\(workerExecutable)"])
            throw ExitCode(78)
        }
        // As root, every worker becomes `user` before it serves (`PrivilegeDrop`); as anyone else, they run as we do.
        var workerUser: String?
        if Syscall.effectiveUserID == 0 {
            let user: String
            if let named = self.user {
                user = named
            } else if (try? PrivilegeDrop.account(named: "sse-hub")) != nil {
                user = "sse-hub"
            } else {
                // The embedded default must run on a fresh machine, where nobody has created sse-hub yet.
                user = "nobody"
                logger.warning(
                    "no user sse-hub (create it with systemd-sysusers, see docs/operations.md): workers run as nobody",
                    metadata: ["event": "worker-user", "worker-user": "nobody"])
            }
            do {
                _ = try PrivilegeDrop.account(named: user)
            } catch {
                logger.critical("cannot run workers as \(user): \(error)")
                throw ExitCode(78)
            }
            workerUser = user
            logger.info("workers run as \(user)", metadata: ["event": "worker-user", "worker-user": "\(user)"])
        }
        var sharedLog: (log: any SharedEventLog, start: SharedLogStart)?
        do {
            sharedLog = try await cluster.join(stream: stream, streamsCarryOn: resuming != nil, logger: logger)
        } catch {
            logger.critical("cannot join the hub's event log: \(DatabaseErrorText.describe(error))", metadata: ["event": "log-refused"])
            throw ExitCode(error is any LogSchemaRefused || error is PostgresURL.Invalid ? 78 : 1)
        }
        var configuration = SupervisorRuntime.Configuration(
            listenAddresses: listenAddresses, operatorSocketPath: controlSocket, workers: workers, workerPath: workerExecutable,
            workerUser: workerUser, verifier: verifier, headTimeout: .seconds(headTimeout), maximumHeadBytes: maxHeadBytes,
            workerWait: .milliseconds(workerWaitMs), workerBacklogBytes: workerBacklogBytes, clientLimits: clientLimits.policy,
            logLevel: logLevel, stream: stream)
        configuration.tokenCacheSize = tokenCacheSize
        configuration.acceptBatchWindow = .microseconds(acceptBatchUs)
        configuration.keepAliveTimeout = keepaliveTimeout > 0 ? .seconds(keepaliveTimeout) : nil
        configuration.metricsListenAddress = metricsListen
        configuration.keySources = keySources
        configuration.workerHangTimeout = .seconds(workerHangTimeout)
        configuration.restartBackoff.first = .milliseconds(workerRestartDelayMs)
        configuration.sharedLog = sharedLog
        if let resuming, let identity = sharedLog?.start.identity, identity != resuming.epoch {
            logger.critical(
                "the event log is not the one this host followed before the upgrade (restored from a backup?); restart the service",
                metadata: ["event": "log-rewound", "log": "\(identity)", "followed": "\(resuming.epoch)"])
            throw ExitCode(1)
        }
        configuration.resuming = resuming
        configuration.inherited = inherited
        (configuration.executable, configuration.arguments) = Self.commandLine()
        try await SupervisorRuntime(configuration: configuration, logger: logger).run()
    }

    /// What an in-place upgrade executes: the path this program was started as (new binaries are installed at the
    /// same path), with the same arguments. A bare name (found on `PATH`) is taken as the file it resolved to.
    static func commandLine() -> (executable: String, arguments: [String]) {
        let arguments = Array(CommandLine.arguments.dropFirst())
        let invoked = CommandLine.arguments.first ?? ""
        if invoked.contains("/") {
            let absolute = invoked.hasPrefix("/") ? invoked : FileManager.default.currentDirectoryPath + "/" + invoked
            return (URL(fileURLWithPath: absolute).standardized.path, arguments)
        }
        return ((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? invoked, arguments)
    }

    /// `sse-worker` in the directory of this executable (`/proc/self/exe`).
    static func siblingWorkerPath() throws -> String {
        let executable = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        return URL(fileURLWithPath: executable).deletingLastPathComponent().appendingPathComponent("sse-worker").path
    }
}

/// The pre-flight of an in-place upgrade, run by the supervisor about to execute this binary (`InPlaceUpgrade`).
struct UpgradeCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: UpgradeCheck.commandName,
        abstract: "Check that this release can take over a running supervisor's state (read on standard input); used by reload.")

    func run() throws {
        let (text, accepted) = UpgradeCheck.answer(stateOn: 0)
        print(text)
        if !accepted { throw ExitCode(UpgradeCheck.refusedStatus) }
    }
}

/// Prints a token signed with the server's secret, for trying the server by hand.
struct MintToken: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token", abstract: "Print a JWT signed with the server's secret (for trying it out).")

    @Argument(help: "The user id (claim sub).")
    var userID: String

    @Flag(help: "Add \"role\":\"publisher\", for the publishers' API.")
    var publisher = false

    @Option(help: "Seconds until the token expires.")
    var lifetime: Int = 3600

    @Option(help: "File holding the HS256 secret (else $SSE_JWT_SECRET, else the systemd credential jwt-secret).")
    var jwtSecretFile: String?

    func run() async throws {
        let signer = await TokenSigner(secret: try JWTSecret.load(file: jwtSecretFile))
        print(try await signer.sign(userID: userID, publisher: publisher, lifetime: TimeInterval(lifetime)))
    }
}
