import ArgumentParser

/// The operator's client for the operator socket: `sse-supervisor ctl status`, `sse-supervisor ctl reload`.
struct OperatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ctl", abstract: "Ask a running server over its control socket: status, or reload.")

    enum Action: String, ExpressibleByArgument, CaseIterable {
        case status, reload
    }

    @Argument(help: "status (the health report with topic counts) or reload (replace every worker; streams stay open).")
    var action: Action

    @Option(help: "The control socket.")
    var socket = "/run/sse-hub/control"

    func run() async throws {
        let (status, body) = try await OperatorClient.request(
            socket: socket, method: action == .status ? .GET : .POST, path: action == .status ? "/status" : "/reload")
        print(body)
        if !(200..<300).contains(status) { throw ExitCode(1) }
    }
}
