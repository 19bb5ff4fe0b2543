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

    @Option(help: "This worker's shard number.")
    var shard: Int

    @Option(help: "Descriptor of the control socket (stream, framed control protocol).")
    var controlFd: CInt

    @Option(help: "Descriptor of the hand-off socket (SOCK_SEQPACKET, SCM_RIGHTS).")
    var handoffFd: CInt

    @Option(help: "Descriptor of the hand-off doorbell (a pipe's read end: a byte after every connection sent).")
    var doorbellFd: CInt

    @Option(help: "The supervisor's epoch (first part of every event id).")
    var epoch: UInt64

    @OptionGroup var stream: StreamOptions

    @Option(help: "Log level.")
    var logLevel: Logger.Level = .info

    @Option(help: "The user to run as; required when started as root (privileges are dropped before anything else).")
    var user: String?

    var logger: Logger {
        var logger = Logger(label: "sse-worker")
        logger[metadataKey: "worker"] = "\(shard)"
        return logger
    }

    /// Runs with logging set up and privileges already dropped (`WorkerMain`).
    func run() async throws {
        Syscall.ignoreSIGPIPE()
        // If the supervisor dies without telling us, do not linger as an orphan holding clients.
        // (After the privilege drop: changing ids clears the parent-death signal.)
        try Syscall.setParentDeathSignal(SIGTERM)

        try await WorkerRuntime(
            shard: shard, controlFD: controlFd, handoffFD: handoffFd, doorbellFD: doorbellFd, epoch: epoch, stream: stream,
            logger: logger
        ).run()
    }
}
