import ArgumentParser

/// The operator's client for the operator socket: `sse-supervisor ctl status`, `sse-supervisor ctl reload`.
struct OperatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ctl", abstract: "Ask a running server over its control socket: status, or reload.")

    enum Action: String, ExpressibleByArgument, CaseIterable {
        case status, reload
    }

    @Argument(
        help: "status (the running release, the health report with topic counts) or reload (upgrade the supervisor in place to the installed release, then replace every worker; streams stay open). A refused reload exits with status 2 and changes nothing.")
    var action: Action

    @Option(help: "The control socket.")
    var socket = "/run/sse-hub/control"

    @Flag(help: "With reload: replace the workers only, not the supervisor (no in-place upgrade).")
    var workersOnly = false

    /// `ctl reload`'s exit status when the reload was refused before anything changed (the reason is printed).
    static let refusedStatus: Int32 = 2

    func run() async throws {
        let path = action == .status ? "/status" : (workersOnly ? "/reload?workers-only" : "/reload")
        let (status, body) = try await OperatorClient.request(socket: socket, method: action == .status ? .GET : .POST, path: path)
        print(body)
        if status == 409 { throw ExitCode(Self.refusedStatus) }
        if !(200..<300).contains(status) { throw ExitCode(1) }
    }
}
