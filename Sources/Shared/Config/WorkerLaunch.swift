import ArgumentParser
import Logging

/// How the supervisor starts a worker: the descriptor numbers the worker finds its ends of the links at, and its
/// arguments. The supervisor builds the arguments with `arguments(...)`; the worker parses them as this option
/// group; a round-trip test keeps the two in step.
public struct WorkerLaunch: ParsableArguments, Sendable {
    /// Where the supervisor places the worker's ends (`posix_spawn_file_actions_adddup2`).
    public enum Descriptor {
        /// The control channel (stream socket, framed control protocol).
        public static let control: CInt = 3
        /// The hand-off socket (`SOCK_SEQPACKET`, `SCM_RIGHTS`).
        public static let handoffSocket: CInt = 4
        /// The hand-off doorbell (a pipe's read end: a byte after every connection sent).
        public static let doorbell: CInt = 5
    }

    public init() {}

    @Option(help: "This worker's shard number.")
    public var shard: Int

    @Option(help: "Descriptor of the control socket (stream, framed control protocol).")
    public var controlFd: CInt

    @Option(help: "Descriptor of the hand-off socket (SOCK_SEQPACKET, SCM_RIGHTS).")
    public var handoffFd: CInt

    @Option(help: "Descriptor of the hand-off doorbell (a pipe's read end: a byte after every connection sent).")
    public var doorbellFd: CInt

    @Option(help: "The supervisor's epoch (first part of every event id).")
    public var epoch: UInt64

    @OptionGroup public var stream: StreamOptions

    @Option(help: "Log level.")
    public var logLevel: Logger.Level = .info

    @Option(help: "The user to run as; required when started as root (privileges are dropped before anything else).")
    public var user: String?

    @Flag(help: "A hub across hosts: report every stream that opens or closes, and leave forgetting users to the hub.")
    public var hubWideUsers = false

    /// The arguments of the worker of `shard` (the descriptor numbers are `Descriptor`'s).
    public static func arguments(
        shard: Int, epoch: UInt64, stream: StreamOptions, logLevel: Logger.Level, user: String?, hubWideUsers: Bool = false
    ) -> [String] {
        [
            "--shard", String(shard), "--control-fd", String(Descriptor.control), "--handoff-fd", String(Descriptor.handoffSocket),
            "--doorbell-fd", String(Descriptor.doorbell), "--epoch", String(epoch),
        ] + stream.workerArguments + ["--log-level", logLevel.rawValue] + (user.map { ["--user", $0] } ?? [])
            + (hubWideUsers ? ["--hub-wide-users"] : [])
    }
}
