/// How the control plane tells a hung worker from a busy one: it pings every worker over its control channel and
/// kills the ones that stop answering (a worker that is stopped, deadlocked or spinning keeps its sockets open, so
/// only silence tells it apart; a crash is seen when it is reaped). The systemd watchdog is fed only while every
/// worker answers (`ServiceManagerLink`).
enum WorkerLiveness {
    struct Policy: Sendable {
        /// Time between pings.
        var interval: Duration = .seconds(1)
        /// A worker is not answering after missing two pings: the watchdog stops being fed.
        var unanswered: Duration = .milliseconds(2500)
        /// A worker silent this long is hung: it is killed, and restarted. Not shorter: on an overloaded host (a
        /// reconnect storm, 1,000,000 streams on two cores) a healthy worker's loop can take seconds to come round to
        /// a ping, and killing it drops all its streams at once, which makes the storm worse (`--worker-hang-timeout`).
        var hung: Duration = .seconds(15)
    }
}
