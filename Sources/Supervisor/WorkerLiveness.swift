import ServiceLifecycle

/// Pings every worker over its control channel and kills the ones that stop answering: a worker that is
/// stopped, deadlocked or spinning keeps its socket open, so only silence tells it apart (a crash is seen
/// by `waitpid`). The systemd watchdog is fed only while every worker answers (`ServiceManagerLink`).
struct WorkerLiveness: Service {
    struct Policy: Sendable {
        /// Time between pings.
        var interval: Duration = .seconds(1)
        /// A worker is not answering after missing two pings: the watchdog stops being fed.
        var unanswered: Duration = .milliseconds(2500)
        /// A worker silent this long is hung: it is killed, and restarted.
        var hung: Duration = .seconds(5)
    }

    let pool: WorkerPool
    let policy: Policy

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            var nonce: UInt64 = 0
            while !Task.isCancelled {
                nonce &+= 1
                pool.pingWorkers(nonce: nonce)
                pool.killWorkers(silentFor: policy.hung)
                try await Task.sleep(for: policy.interval)
            }
        }
    }
}
