import ArgumentParser
import Foundation
import Shared

/// The operator's client for the operator socket (`sse-supervisor ctl ...`): what reads well in a terminal, and
/// `--json` for scripts.
struct OperatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ctl", abstract: "Ask a running server over its control socket.",
        subcommands: [Status.self, Reload.self, Publish.self, Stats.self, Workers.self])

    /// `ctl reload`'s exit status when the reload was refused before anything changed (the reason is printed).
    static let refusedStatus: Int32 = 2

    struct Connection: ParsableArguments {
        @Option(help: "The control socket.")
        var socket = "/run/sse-hub/control"

        @Flag(help: "Print the server's JSON answer as it is, for scripts.")
        var json = false

        /// The answer's body; a failure (its status and message on standard error) exits 1.
        func ask(_ method: String, _ path: String, body: String = "") async throws -> String {
            let (status, text) = try await OperatorClient.request(socket: socket, method: .init(rawValue: method), path: path, body: body)
            guard (200..<300).contains(status) else {
                let message = (try? JSONDecoder().decode(ErrorBody.self, from: Data(text.utf8)))?.msg ?? text
                FileHandle.standardError.write(Data("sse-supervisor ctl: \(status) \(message)\n".utf8))
                throw ExitCode(1)
            }
            return text
        }

        /// `status` and `reload` as they always were: the JSON answer on standard output, whatever it says; a refused
        /// reload (409) exits 2, any other failure 1.
        func printAnswer(_ method: String, _ path: String) async throws {
            let (status, text) = try await OperatorClient.request(socket: socket, method: .init(rawValue: method), path: path)
            print(text)
            if status == 409 { throw ExitCode(OperatorCommand.refusedStatus) }
            if !(200..<300).contains(status) { throw ExitCode(1) }
        }

        struct ErrorBody: Decodable { var msg: String }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The running release and the health report with topic counts (JSON).")
        @OptionGroup var connection: Connection

        func run() async throws { try await connection.printAnswer("GET", "/status") }
    }

    struct Reload: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Upgrade the supervisor in place to the installed release, then replace every worker; streams stay open. A refused reload exits with status 2 and changes nothing.")
        @OptionGroup var connection: Connection

        @Flag(help: "Replace the workers only, not the supervisor (no in-place upgrade).")
        var workersOnly = false

        func run() async throws { try await connection.printAnswer("POST", workersOnly ? "/reload?workers-only" : "/reload") }
    }

    struct Publish: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Publish an event, as a backend would: to everyone, to a topic's subscribers, or to one user.")
        @OptionGroup var connection: Connection

        @Option(help: "Only to this topic's subscribers.")
        var topic: String?

        @Option(help: "Only to this user's streams.")
        var user: String?

        @Argument(help: "The event's name (its `event:` line).")
        var event: String

        @Argument(help: "The event's data: any JSON value.")
        var data: String = "null"

        func validate() throws {
            guard topic == nil || user == nil else { throw ValidationError("--topic and --user cannot be combined") }
            guard (try? JSONDecoder().decode(JSONValue.self, from: Data(data.utf8))) != nil else {
                throw ValidationError("the data must be JSON (a string is \"quoted\")")
            }
        }

        func run() async throws {
            var fields: [String: JSONValue] = ["event": .string(event), "data": try JSONDecoder().decode(JSONValue.self, from: Data(data.utf8))]
            if let topic { fields["topic"] = .string(topic) }
            if let user { fields["userId"] = .string(user) }
            let answer = try await connection.ask("POST", "/publish", body: HubJSON.encode(JSONValue.object(fields)))
            guard !connection.json else { return print(answer) }
            struct Published: Decodable { var id: String }
            let id = (try? JSONDecoder().decode(Published.self, from: Data(answer.utf8)))?.id ?? "?"
            let audience = topic.map { "topic \($0)" } ?? user.map { "user \($0)" } ?? "everyone"
            print("published \(event) to \(audience): id \(id)")
        }
    }

    struct Stats: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Streams and topics (with their connected subscribers), over the hub.")
        @OptionGroup var connection: Connection

        func run() async throws {
            let answer = try await connection.ask("GET", "/stats")
            guard !connection.json else { return print(answer) }
            let stats = try JSONDecoder().decode(StatsBody.self, from: Data(answer.utf8))
            var rows = [["streams", String(stats.totalClients)], ["topics", String(stats.totalTopics)]]
            for (topic, count) in stats.topics.sorted(by: { ($1.value, $0.key) < ($0.value, $1.key) }) { rows.append(["  " + topic, String(count)]) }
            for (host, totals) in (stats.hosts ?? [:]).sorted(by: { $0.key < $1.key }) {
                rows.append(["host " + host, "\(totals.totalClients) streams, \(totals.totalTopics) topics"])
            }
            print(TextTable.render(rows))
        }
    }

    struct Workers: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every worker process: pid, state, streams, memory, uptime, restarts.")
        @OptionGroup var connection: Connection

        func run() async throws {
            let answer = try await connection.ask("GET", "/workers")
            guard !connection.json else { return print(answer) }
            let workers = try JSONDecoder().decode([WorkerRow].self, from: Data(answer.utf8))
            var rows = [["SHARD", "PID", "STATE", "STREAMS", "MEMORY", "UPTIME", "RESTARTS"]]
            for worker in workers {
                rows.append([
                    String(worker.shard), String(worker.pid), worker.state, String(worker.streams),
                    worker.memoryKiB.map { String(format: "%.1f MiB", Double($0) / 1024) } ?? "-", Self.duration(worker.uptimeSeconds),
                    String(worker.restarts),
                ])
            }
            print(TextTable.render(rows))
        }

        /// `3d 04h`, `2h 05m`, `4m 09s`, `12s`.
        static func duration(_ seconds: Double) -> String {
            let total = Int(seconds)
            let (days, hours, minutes, secs) = (total / 86_400, total / 3600 % 24, total / 60 % 60, total % 60)
            if days > 0 { return String(format: "%dd %02dh", days, hours) }
            if hours > 0 { return String(format: "%dh %02dm", hours, minutes) }
            if minutes > 0 { return String(format: "%dm %02ds", minutes, secs) }
            return "\(secs)s"
        }
    }
}

/// Columns padded to their widest cell, two spaces apart.
enum TextTable {
    static func render(_ rows: [[String]]) -> String {
        let widths = (0..<(rows.map(\.count).max() ?? 0)).map { column in rows.map { column < $0.count ? $0[column].count : 0 }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}
