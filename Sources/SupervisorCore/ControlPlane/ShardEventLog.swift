import Logging

/// The log line of each shard transition: one per transition, with its `SSE_EVENT` and the metadata the plane
/// gathered while performing it (pid, status, uptime, history replayed, restart delay).
enum ShardEventLog {
    static func log<Worker>(
        _ transition: ShardMachine<Worker>.Transition, shuttingDown: Bool, metadata: Logger.Metadata, logger: Logger
    ) {
        var metadata = metadata
        metadata["event"] = "\(transition.event.rawValue)"
        let (level, message): (Logger.Level, Logger.Message) =
            switch transition.event {
            case .shardStarting: (.debug, "starting the shard's first worker")
            case .restartDue: (.info, "restarting worker")
            case .workerStarted: (.info, "worker started")
            case .workerAdopted: (.info, "worker taken over by the upgraded supervisor")
            case .spawnFailed: (.error, "worker restart scheduled after a failed start")
            case .workerReady: (.info, "worker ready")
            case .workerExited where shuttingDown: (.info, "worker exited")
            case .workerExited: (.error, "worker exited unexpectedly; restarting it")
            case .workerReplacing: (.info, "reload: starting the worker's successor; the retiring one serves on until it is up")
            case .passedStreams: (.info, "the retiring worker passed its streams on; stopping it")
            case .migrationTimedOut: (.warning, "the retiring worker did not finish passing its streams on in time; stopping it")
            case .workerRetired: (.info, "retired worker exited")
            case .shardStopping: (.debug, "stopping the shard's workers")
            }
        logger.log(level: level, message, metadata: metadata)
    }
}
