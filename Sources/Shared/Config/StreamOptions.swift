import ArgumentParser

/// The options of streams and their events: given to `sse-supervisor`, which passes them on to every worker.
public struct StreamOptions: ParsableArguments, Sendable {
    public init() {}

    @Option(help: "Seconds between :heartbeat comments on every stream.")
    public var heartbeat: Int = 30

    @Option(help: "Seconds a user's topics are kept after their last stream closes.")
    public var topicGrace: Int = 300

    @Option(name: .customLong("cors-origin"), help: "Allow browsers from this origin (repeatable; * allows any). Without it no CORS header is sent.")
    public var corsOrigins: [String] = []

    @Option(help: "Events kept for Last-Event-ID replay (count).")
    public var historySize: Int = 10_000

    @Option(help: "Seconds events are kept for Last-Event-ID replay.")
    public var historyTtl: Int = 600

    @Option(help: "Reconnection delay sent to clients (retry:, milliseconds).")
    public var retryMs: Int = 3000

    @Option(help: "A stream whose unsent bytes exceed this is disconnected (slow consumer).")
    public var maxPendingBytes: Int = 1_048_576

    /// The same options, as arguments for `sse-worker` (which parses this group too).
    public var workerArguments: [String] {
        [
            "--heartbeat", String(heartbeat), "--topic-grace", String(topicGrace), "--history-size", String(historySize),
            "--history-ttl", String(historyTtl), "--retry-ms", String(retryMs), "--max-pending-bytes", String(maxPendingBytes),
        ] + corsOrigins.flatMap { ["--cors-origin", $0] }
    }

    public func validate() throws {
        guard heartbeat > 0, topicGrace >= 0 else { throw ValidationError("--heartbeat must be positive and --topic-grace not negative") }
        guard historySize > 0, historyTtl > 0 else { throw ValidationError("--history-size and --history-ttl must be positive") }
        guard retryMs > 0 else { throw ValidationError("--retry-ms must be positive") }
        guard maxPendingBytes >= 4096 else { throw ValidationError("--max-pending-bytes must be at least 4096") }
    }
}
