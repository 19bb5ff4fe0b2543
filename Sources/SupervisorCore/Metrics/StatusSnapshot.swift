import Shared

/// What the status page shows, sent every second on `/status/events` (the page computes rates from consecutive
/// snapshots' totals).
struct StatusSnapshot: Encodable, Sendable {
    /// Counters since this supervisor started.
    struct Totals: Encodable, Sendable {
        var connectionsAccepted: Int
        var connectionsRefused: Int
        var eventsDelivered: Int
        var bytesWritten: Int
        var slowConsumersDropped: Int
        var publishes: Int
        var resumes: Int
        var resets: Int
        var reloads: Int
        var upgrades: Int
        var workerRestarts: Int
    }

    /// Milliseconds since 1970.
    var time: Int64
    var host: String
    var uptimeSeconds: Int64
    var streams: Int
    /// Every worker process, as `ctl workers` lists them.
    var workers: [WorkerRow]
    var totals: Totals
    var historyEvents: Int
}
