/// What the status page shows, sent every second on `/status/events` (the page computes rates from consecutive
/// snapshots' totals).
struct StatusSnapshot: Encodable, Sendable {
    struct Worker: Encodable, Sendable {
        var worker: Int
        var pid: Int32
        var state: String
        var streams: Int
        var residentBytes: Int?
        var uptimeSeconds: Double
        var restarts: Int
    }

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
    var workers: [Worker]
    var totals: Totals
    var historyEvents: Int
}
