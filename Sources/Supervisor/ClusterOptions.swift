import ArgumentParser
import Foundation
import Logging
import PostgresLog
import Shared
import SupervisorCore

/// The options that join this host to a hub spanning several hosts, through a shared event log on PostgreSQL.
struct ClusterOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Join the hub whose event log is in this PostgreSQL database (postgres://user:password@host:5432/db?sslmode=prefer); else $SSE_POSTGRES_URL, else the systemd credential postgres-url. Without it: a single host, no database.",
            valueName: "url"))
    var postgresURL: String?

    @Option(help: "This host's name in the hub's stats, health and logs (default: the hostname).")
    var hostID: String?

    @Option(help: "Seconds to keep trying to reach the event log at start before giving up.")
    var postgresStartTimeout: Int = 30

    func validate() throws {
        if let hostID { guard (1...128).contains(hostID.utf8.count) else { throw ValidationError("--host-id must be 1 to 128 bytes") } }
        guard (0...3600).contains(postgresStartTimeout) else { throw ValidationError("--postgres-start-timeout must be 0 to 3600") }
    }

    /// The URL from the option, the environment or the systemd credential, in that order; nil: a single host.
    func resolvedURL(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> String? {
        if let postgresURL { return postgresURL }
        if let url = environment["SSE_POSTGRES_URL"], !url.isEmpty { return url }
        if let directory = environment["CREDENTIALS_DIRECTORY"] {
            let path = directory + "/postgres-url"
            if FileManager.default.fileExists(atPath: path) {
                return try String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            }
        }
        return nil
    }

    /// Opens the shared log, retrying while the database cannot be reached (it may be starting too); a schema newer
    /// than this release knows, or a bad URL, is refused at once. Nil without a URL.
    /// `streamsCarryOn`: this process took over from its previous program in place, streams and all.
    func join(stream: StreamOptions, streamsCarryOn: Bool, logger: Logger) async throws -> (log: any SharedEventLog, start: SharedLogStart)? {
        guard let text = try resolvedURL() else { return nil }
        let url = try PostgresURL(text)
        let settings = PostgresEventLog.Settings(
            url: url, hostID: hostID ?? ProcessInfo.processInfo.hostName, historySize: stream.historySize,
            historyTTL: .seconds(stream.historyTtl), topicGrace: .seconds(stream.topicGrace),
            maximumStreamsPerUser: stream.maxStreamsPerUser,
            presenceGrace: stream.presenceEvents ? .seconds(stream.presenceGrace) : nil, streamsCarryOn: streamsCarryOn)
        let deadline = ContinuousClock.now + .seconds(postgresStartTimeout)
        while true {
            do {
                let (log, start) = try await PostgresEventLog.open(settings, logger: logger)
                return (log, start)
            } catch let error as any LogSchemaRefused {
                throw error
            } catch {
                guard ContinuousClock.now < deadline else { throw error }
                logger.warning(
                    "cannot reach the event log yet; retrying", metadata: ["url": "\(url)", "error": "\(DatabaseErrorText.describe(error))", "event": "log-waiting"])
                try await Task.sleep(for: .seconds(1))
            }
        }
    }
}
