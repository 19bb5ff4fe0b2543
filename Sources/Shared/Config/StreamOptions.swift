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

    @Option(help: "Bytes of event data the replay history may hold, in the supervisor and in each worker (oldest events go first).")
    public var historyBytes: Int = 64 * 1024 * 1024

    @Option(help: "Topics one user may hold; a subscribe past it is refused (409) and changes nothing.")
    public var maxTopicsPerUser: Int = 256

    @Option(help: "Reconnection delay sent to clients (retry:, milliseconds).")
    public var retryMs: Int = 3000

    @Option(help: "Seconds a request (head and body) has to arrive whole once its connection is being served (then 408).")
    public var requestTimeout: Int = 30

    @Option(help: "Connections one client address (IPv4, or IPv6 /64) may hold on one worker (streams and topic requests); past it: 429. 0: no limit.")
    public var maxWorkerConnsPerIp: Int = 0

    @Option(help: "A stream whose unsent bytes exceed this is disconnected (slow consumer).")
    public var maxPendingBytes: Int = 1_048_576

    @Option(help: "Streams one user may hold at once (several tabs); each gets the user's events, and the oldest is ended (after an event `replaced`) when one more opens.")
    public var maxStreamsPerUser: Int = 1

    @Flag(help: "Publish an event `presence` ({\"userId\":...,\"online\":true|false}) to a user's topics when their first stream opens and when their last closes (and no new one opens within --presence-grace).")
    public var presenceEvents = false

    @Option(help: "Seconds a user whose last stream closed may reconnect without a presence event.")
    public var presenceGrace: Int = 5

    @Option(help: "A cookie that may carry the token of a stream, a subscribe or an unsubscribe (set HttpOnly by the app's backend; no token in any URL). Credentialed CORS is then answered for the origins --cors-origin lists.")
    public var authCookie: String?

    /// The CORS answers of the API: with a cookie token, credentialed for the origins listed by name.
    public var corsPolicy: CORSPolicy { CORSPolicy(allowedOrigins: corsOrigins, allowsCredentials: authCookie != nil) }

    /// The same options, as arguments for `sse-worker` (which parses this group too).
    public var workerArguments: [String] {
        let cookie: [String] = authCookie.map { ["--auth-cookie", $0] } ?? []
        let presence: [String] = presenceEvents ? ["--presence-events", "--presence-grace", String(presenceGrace)] : []
        let cors: [String] = corsOrigins.flatMap { ["--cors-origin", $0] }
        let values: [String] = [
            "--heartbeat", String(heartbeat), "--topic-grace", String(topicGrace), "--history-size", String(historySize),
            "--history-ttl", String(historyTtl), "--history-bytes", String(historyBytes), "--max-topics-per-user",
            String(maxTopicsPerUser), "--retry-ms", String(retryMs), "--request-timeout", String(requestTimeout),
            "--max-worker-conns-per-ip", String(maxWorkerConnsPerIp), "--max-pending-bytes", String(maxPendingBytes),
            "--max-streams-per-user", String(maxStreamsPerUser),
        ]
        return values + cors + cookie + presence
    }

    /// Bounds that keep every later conversion in range (seconds to nanoseconds, counts to 32-bit frame fields).
    public func validate() throws {
        let day = 86_400
        guard (1...day).contains(heartbeat) else { throw ValidationError("--heartbeat must be 1 to \(day) seconds") }
        guard (0...(30 * day)).contains(topicGrace) else { throw ValidationError("--topic-grace must be 0 to \(30 * day) seconds") }
        guard (1...10_000_000).contains(historySize) else { throw ValidationError("--history-size must be 1 to 10000000") }
        guard (1...(30 * day)).contains(historyTtl) else { throw ValidationError("--history-ttl must be 1 to \(30 * day) seconds") }
        guard (1024 * 1024...(1 << 40)).contains(historyBytes) else { throw ValidationError("--history-bytes must be 1 MiB to 1 TiB") }
        guard (1...100_000).contains(maxTopicsPerUser) else { throw ValidationError("--max-topics-per-user must be 1 to 100000") }
        guard maxWorkerConnsPerIp >= 0 else { throw ValidationError("--max-worker-conns-per-ip must not be negative") }
        guard (1...3600).contains(requestTimeout) else { throw ValidationError("--request-timeout must be 1 to 3600 seconds") }
        guard (1...(7 * day * 1000)).contains(retryMs) else { throw ValidationError("--retry-ms must be 1 to \(7 * day * 1000)") }
        guard (0...3600).contains(presenceGrace) else { throw ValidationError("--presence-grace must be 0 to 3600 seconds") }
        guard (1...100).contains(maxStreamsPerUser) else { throw ValidationError("--max-streams-per-user must be 1 to 100") }
        if let authCookie {
            // RFC 6265's cookie-name is an RFC 9110 token.
            let tokenCharacters = Set("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
            guard !authCookie.isEmpty, authCookie.count <= 128, authCookie.allSatisfy(tokenCharacters.contains) else {
                throw ValidationError("--auth-cookie must be a cookie name (letters, digits and !#$%&'*+-.^_`|~, at most 128)")
            }
        }
        guard (4096...(1 << 30)).contains(maxPendingBytes) else { throw ValidationError("--max-pending-bytes must be 4096 to 1 GiB") }
    }
}
