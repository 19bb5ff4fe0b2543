import Foundation
import Histogram
import Shared

/// What a load process is asked to do: its slice of the subscribers.
struct LoadPlan: Codable, Sendable {
    var target: BenchTarget
    var firstIndex: Int
    var count: Int
    /// Connections per second for this process.
    var rampRate: Double
    /// Channels (topics) the subscribers are spread over; 0 means one broadcast channel.
    var channels: Int
    /// Topic mode: each user subscribes to its channel before streaming (sse-hub, Node). Not in user mode.
    var subscribesToTopics: Bool
    var secret: String?
    /// `--token-key ALG:PATH`: the streams' tokens are signed with this private key instead.
    var tokenKey: String?
    /// At most this many of this process's connections may be set up at once (connecting, or waiting for the
    /// response head); nil: no limit. Some servers ask for it (Pushpin's README: at most 50 connects in flight).
    var maximumConnecting: Int?
    /// Reconnections per second in a reconnect storm (default: `rampRate`).
    var stormRate: Double? = nil
    /// Stop opening streams while the machine's available memory (`MemAvailable`) is under this many bytes.
    var memoryFloorBytes: UInt64? = nil
    /// Events numbered from here on are a burst (`--burst`): their latency is kept apart from the others'.
    var burstFrom: Int? = nil
}

/// Messages a load process writes to stdout, one JSON object a line.
enum LoadMessage: Codable, Sendable {
    case progress(LoadProgress)
    case result(LoadResult)
}

struct LoadProgress: Codable, Sendable {
    var attempted: Int
    var established: Int
    var failed: Int
    var closed: Int
    var received: Int
    var done: Bool
    /// `MonotonicClock` times (one clock for every process) of the first attempt and the latest established
    /// connection: the connect rate is measured between them, not between progress reports a second apart.
    var firstAttemptAt: UInt64 = 0
    var lastEstablishedAt: UInt64 = 0
    /// This process's CPU seconds (since it started, tokens minted included) when its last connection was set
    /// up or failed: what the publishing phase's CPU is measured from.
    var settledCPUSeconds: Double?
    /// Its CPU from the first connection attempted to then: its cost of connecting.
    var connectCPUSeconds: Double?
    /// Set when the memory guard stopped the opening of streams before all were attempted.
    var stoppedByMemoryGuard = false
    /// The reconnect storm, once one was ordered.
    var storm: StormProgress?

    /// Every stream attempted has an outcome (the memory guard may have stopped the attempts early).
    var settled: Bool { done && established + failed >= attempted }
}

/// A reconnect storm in one load process: every stream dropped at once, then reconnected with its `Last-Event-ID`.
struct StormProgress: Codable, Sendable {
    var dropped = 0
    var attempted = 0
    var resumed = 0
    var failed = 0
    /// `MonotonicClock` times of the drop and of the latest resumed stream (its response head received).
    var droppedAt: UInt64 = 0
    var lastResumedAt: UInt64 = 0
    /// This process's CPU from the drop until every stream resumed or failed.
    var cpuSeconds: Double?
    var settled: Bool { attempted == dropped && resumed + failed >= dropped }
}

struct LoadResult: Codable, Sendable {
    var progress: LoadProgress
    var unique: Int
    var duplicates: Int
    var reordered: Int
    /// Per subscriber: the unique events it received (to count losses against what was published to its channel).
    var uniqueByChannel: [String: Int]
    var subscribersByChannel: [String: Int]
    var latency: Histogram<UInt64>
    var timeToOpen: Histogram<UInt64>
    var cpuSeconds: Double
    /// `MonotonicClock` time of the last event received.
    var lastReceivedAt: UInt64
    /// Per channel, the distinct arrival orders (`StreamTally.orderFingerprint`) of its subscribers that received
    /// everything published to it, with how many received them in each.
    var ordersByChannel: [String: [UInt64: Int]] = [:]
    /// Per resumed stream, the latency of the first event it received that was published after it reconnected.
    var firstLiveLatency: Histogram<UInt64>? = nil
    /// The latency of the burst's events (`LoadPlan.burstFrom`).
    var burstLatency: Histogram<UInt64>? = nil
}

extension LoadPlan {
    /// What signs the streams' tokens: `tokenKey` when given, else the secret; nil for a target without tokens.
    func tokenSigner() async throws -> TokenSigner? {
        guard target.usesTokens else { return nil }
        if let tokenKey, let colon = tokenKey.firstIndex(of: ":"), let algorithm = JWSAlgorithm(rawValue: String(tokenKey[..<colon])) {
            let pem = try String(contentsOfFile: String(tokenKey[tokenKey.index(after: colon)...]), encoding: .utf8)
            return try await TokenSigner(privateKeyPEM: pem, algorithm: algorithm)
        }
        if let tokenKey { throw BenchError(description: "--token-key must be ALG:PATH (RS256 or ES256), not \(tokenKey)") }
        return if let secret { await TokenSigner(secret: secret) } else { nil }
    }
}

/// The body of `sse-bench load`: mint the tokens, then run the reactor on a thread of its own until stdin ends.
enum LoadProcess {
    static func run(plan: LoadPlan) async throws {
        let signer = try await plan.tokenSigner()
        var tokens: [String?] = []
        tokens.reserveCapacity(plan.count)
        for index in plan.firstIndex..<(plan.firstIndex + plan.count) {
            tokens.append(try await signer?.sign(userID: "bench-\(index)", lifetime: 86_400))
        }
        guard let server = Syscall.ipv4Address(plan.target.host, port: plan.target.port) else {
            throw BenchError(description: "sse-bench's load processes connect over IPv4: \(plan.target.host) is not an IPv4 address")
        }
        let allTokens = tokens
        let failure: String? = await withCheckedContinuation { continuation in
            let thread = Thread {
                Syscall.nameThisThread("load-reactor")
                do {
                    try LoadReactor(plan: plan, tokens: allTokens, server: server).run()
                    continuation.resume(returning: nil)
                } catch {
                    continuation.resume(returning: "\(error)")
                }
            }
            thread.start()
        }
        if let failure { throw BenchError(description: "load process: \(failure)") }
    }

    static func emit(_ message: LoadMessage) {
        guard let data = try? JSONEncoder().encode(message) else { return }
        FileHandle.standardOutput.write(data + Data("\n".utf8))
    }
}

/// CPU time (user + system) a process has used (`ProcessStat`); 0 when it cannot be read.
enum ProcessCPU {
    static func seconds(pid: String = "self") -> Double { ProcessStat.cpuSeconds(pid: pid) ?? 0 }
}
