import Logging
import Shared

/// Logs the connections the per-address limits refuse, at most once a second with counts (a flood must not
/// become a flood of log lines). Owned by the accept thread, which calls `flushIfDue` when `due` passes.
struct ClientLimitLog {
    private let logger: Logger
    private var tooManyHeld = 0
    private var tooManyNew = 0
    private var untracked = 0
    private var lastAddress: ClientAddressKey?
    private var quietUntil = ContinuousClock.now
    /// When the counts gathered during the quiet second are to be written; nil when there are none.
    private(set) var due: ContinuousClock.Instant?

    init(logger: Logger) { self.logger = logger }

    mutating func refused(_ refusal: ClientAddressLimiter.Refusal, from address: ClientAddressKey, now: ContinuousClock.Instant) {
        switch refusal {
        case .tooManyHeld: tooManyHeld += 1
        case .tooManyNew: tooManyNew += 1
        }
        lastAddress = address
        record(now: now)
    }

    /// A connection admitted without a limit because the table of addresses is full.
    mutating func admittedUntracked(now: ContinuousClock.Instant) {
        untracked += 1
        record(now: now)
    }

    private mutating func record(now: ContinuousClock.Instant) {
        if now >= quietUntil { flush(now: now) } else if due == nil { due = quietUntil }
    }

    /// Writes the counts gathered during the quiet second once it is over (reads the clock only if there are some).
    mutating func flushIfDue() {
        guard let due else { return }
        let now = ContinuousClock.now
        if due <= now { flush(now: now) }
    }

    private mutating func flush(now: ContinuousClock.Instant) {
        due = nil
        quietUntil = now + .seconds(1)
        if tooManyHeld + tooManyNew > 0 {
            logger.warning(
                "connections refused (429): over the limits per client address (--max-conns-per-ip, --conn-rate-per-ip)",
                metadata: [
                    "event": "client-limited", "refused-concurrent": "\(tooManyHeld)", "refused-rate": "\(tooManyNew)",
                    "last-address": "\(lastAddress.map(String.init(describing:)) ?? "")",
                ])
        }
        if untracked > 0 {
            logger.warning(
                "connections admitted without per-address limits: too many client addresses are tracked",
                metadata: ["event": "client-limits-table-full", "connections": "\(untracked)"])
        }
        tooManyHeld = 0
        tooManyNew = 0
        untracked = 0
    }
}
