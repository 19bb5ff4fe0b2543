/// Admission of new connections per client address (`ClientAddressKey`), decided at accept, before any byte
/// of the request is read or any token verified. Owned by the accept thread: no locks.
///
/// Two limits, each optional:
/// - *held*: connections of one address the supervisor holds at once, from accept until it lets go of them
///   (the head is whole and handed on, or refused, timed out or closed). That is what a slowloris occupies.
///   Once a connection is handed to a worker or to the supervisor's HTTP server it is no longer seen, so it no
///   longer counts;
/// - *new per second*: a token bucket per address (burst = rate), which bounds how fast one address can open
///   connections, and so how fast it can take descriptors from a worker.
///
/// The table is bounded: an address whose connections are all let go and whose bucket is full again is
/// forgotten (it would be treated the same as one never seen), in a sweep every `sweepInterval`, or every
/// second while the table is full. When `maximumAddresses` are tracked and none can be forgotten, connections
/// from new addresses are admitted untracked (`Verdict.admittedUntracked`): failing open, because refusing
/// them would let whoever filled the table lock every other client out.
public struct ClientAddressLimiter: Sendable {
    public struct Policy: Sendable, Equatable {
        /// Connections one address may have held by the supervisor at once; nil for no limit.
        public var maximumHeld: Int?
        /// New connections one address may open a second, with a burst of as many; nil for no limit.
        public var newPerSecond: Int?
        /// Addresses tracked at once (about 100 bytes each).
        public var maximumAddresses: Int

        public init(maximumHeld: Int? = nil, newPerSecond: Int? = nil, maximumAddresses: Int = 100_000) {
            self.maximumHeld = maximumHeld
            self.newPerSecond = newPerSecond
            self.maximumAddresses = maximumAddresses
        }

        /// Whether any limit applies (when none does, the accept path skips the limiter altogether).
        public var isEnabled: Bool { maximumHeld != nil || newPerSecond != nil }
    }

    public enum Refusal: Sendable, Equatable {
        /// The address already has `maximumHeld` connections held.
        case tooManyHeld
        /// The address has used its burst of new connections and the bucket has not refilled yet.
        case tooManyNew
    }

    public enum Verdict: Sendable, Equatable {
        /// Admitted; pass the key to `hold` if the connection is kept.
        case admitted
        /// Admitted without being counted: the table is full. Do not `hold` it.
        case admittedUntracked
        case refused(Refusal)
    }

    private struct Entry {
        var held: Int32 = 0
        var tokens: Double
        var refilledAt: ContinuousClock.Instant

        /// A method of the entry, not of the limiter: mutated in place inside the table, the entry must not
        /// need the limiter (a read of it would copy the table on every connection).
        mutating func admit(_ policy: Policy, now: ContinuousClock.Instant) -> Verdict {
            if let maximumHeld = policy.maximumHeld, held >= maximumHeld { return .refused(.tooManyHeld) }
            guard let rate = policy.newPerSecond else { return .admitted }
            tokens = min(Double(rate), tokens + ClientAddressLimiter.seconds(refilledAt.duration(to: now)) * Double(rate))
            refilledAt = now
            guard tokens >= 1 else { return .refused(.tooManyNew) }
            tokens -= 1
            return .admitted
        }
    }

    public let policy: Policy
    private var entries: [ClientAddressKey: Entry] = [:]
    private var nextSweep: ContinuousClock.Instant
    private var nextSweepWhenFull: ContinuousClock.Instant
    /// How often idle addresses are forgotten: a sweep walks the whole table.
    public static let sweepInterval = Duration.seconds(10)
    /// How often, at most, a full table is swept for room.
    public static let fullSweepInterval = Duration.seconds(1)

    public init(policy: Policy, now: ContinuousClock.Instant = .now) {
        self.policy = policy
        nextSweep = now + Self.sweepInterval
        nextSweepWhenFull = now
    }

    /// Addresses tracked now.
    var trackedAddresses: Int { entries.count }

    /// Connections of `key` held now.
    public func held(by key: ClientAddressKey) -> Int { Int(entries[key]?.held ?? 0) }

    /// Decides on a connection just accepted from `key`; an admitted one uses a token of its address's bucket.
    public mutating func admit(_ key: ClientAddressKey, now: ContinuousClock.Instant) -> Verdict {
        if now >= nextSweep { sweep(now: now) }
        if let index = entries.index(forKey: key) { return entries.values[index].admit(policy, now: now) }
        if entries.count >= policy.maximumAddresses {
            guard now >= nextSweepWhenFull else { return .admittedUntracked }
            sweep(now: now)
            guard entries.count < policy.maximumAddresses else { return .admittedUntracked }
        }
        var entry = Entry(tokens: burst, refilledAt: now)
        let verdict = entry.admit(policy, now: now)
        entries[key] = entry
        return verdict
    }

    /// Counts an admitted connection the supervisor keeps (its head is not whole yet).
    public mutating func hold(_ key: ClientAddressKey) {
        guard let index = entries.index(forKey: key) else { return }
        entries.values[index].held += 1
    }

    /// Counts a connection that is kept whatever the limits say (a stream already serving that moves in on reload:
    /// refusing it would break it mid-stream). False when it could not be tracked (the table is full): then do
    /// not `release` it.
    public mutating func holdRegardless(_ key: ClientAddressKey, now: ContinuousClock.Instant) -> Bool {
        if entries[key] == nil {
            guard entries.count < policy.maximumAddresses else { return false }
            entries[key] = Entry(tokens: burst, refilledAt: now)
        }
        hold(key)
        return true
    }

    /// The supervisor let go of a connection it held.
    public mutating func release(_ key: ClientAddressKey) {
        guard let index = entries.index(forKey: key), entries.values[index].held > 0 else { return }
        entries.values[index].held -= 1
    }

    private var burst: Double { Double(policy.newPerSecond ?? 0) }

    /// Forgets every address that holds nothing and whose bucket would be full by now: a fresh entry would
    /// decide the same. Rebuilds the table, so its memory shrinks back after a flood of addresses.
    private mutating func sweep(now: ContinuousClock.Instant) {
        nextSweep = now + Self.sweepInterval
        nextSweepWhenFull = now + Self.fullSweepInterval
        let rate = Double(policy.newPerSecond ?? 0)
        entries = entries.filter { _, entry in
            entry.held > 0 || entry.tokens + Self.seconds(entry.refilledAt.duration(to: now)) * rate < burst
        }
    }

    private static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) * 1e-18
    }
}
