import ArgumentParser
import Foundation
import Logging
import Shared
import WorkerCore

/// `sse-worker`: started by `sse-supervisor` only, with its control socket and hand-off socket in place.
/// Entered through `WorkerMain`, which drops privileges first.
struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sse-worker",
        abstract: "An sse-hub worker process. Started by sse-supervisor; not meant to be run by hand."
    )

    /// Everything the supervisor passes (`WorkerLaunch.arguments`), parsed by the same type that built it.
    @OptionGroup var launch: WorkerLaunch

    var logLevel: Logger.Level { launch.logLevel }
    var user: String? { launch.user }

    var logger: Logger {
        var logger = Logger(label: "sse-worker")
        logger[metadataKey: "worker"] = "\(launch.shard)"
        return logger
    }

    /// Runs with logging set up and privileges already dropped (`WorkerMain`).
    func run() async throws {
        Syscall.ignoreSIGPIPE()
        // If the supervisor dies without telling us, do not linger as an orphan holding clients.
        // (After the privilege drop: changing ids clears the parent-death signal.)
        try Syscall.setParentDeathSignal(SIGTERM)

        try await WorkerRuntime(
            shard: launch.shard, controlFD: launch.controlFd, handoffFD: launch.handoffFd, doorbellFD: launch.doorbellFd,
            epoch: launch.epoch, stream: launch.stream, logger: logger, hubWideUsers: launch.hubWideUsers
        ).run()
    }
}
