import NIOCore

/// An event id: the supervisor's epoch (its start time, in milliseconds since 1970) and a sequence number
/// that grows by one with every publish. Written `<epoch>-<sequence>`; the epoch tells an id from before a
/// restart of the supervisor from a current one.
public struct EventID: Sendable, Hashable, CustomStringConvertible {
    public var epoch: UInt64
    public var sequence: UInt64

    public init(epoch: UInt64, sequence: UInt64) {
        self.epoch = epoch
        self.sequence = sequence
    }

    public init?(_ text: String) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, let epoch = UInt64(parts[0]), let sequence = UInt64(parts[1]) else { return nil }
        self.init(epoch: epoch, sequence: sequence)
    }

    public var description: String { "\(epoch)-\(sequence)" }
}

/// The recent past of published events, bounded by count, by bytes and by age, in sequence order.
///
/// The supervisor keeps every event; a worker keeps those its users could receive (every broadcast and
/// topic event, and the direct events of its own users), so it can replay them to a reconnecting stream.
public struct EventHistory: Sendable {
    public let capacity: Int
    /// Maximum age in milliseconds.
    public let maximumAge: Int64
    /// Most bytes the entries may hold, as `cost(of:)` counts them.
    public let maximumBytes: Int
    /// What the entries hold now.
    public private(set) var bytes = 0
    private var entries: CircularBuffer<PublishCommand>
    /// The highest sequence number that was dropped (by count or age): a client that last saw an id
    /// below it may have missed something that is gone.
    public private(set) var evictedThrough: UInt64 = 0
    /// The highest sequence number known to have been published.
    public private(set) var latestSequence: UInt64 = 0

    public init(capacity: Int, maximumAge: Int64, maximumBytes: Int = .max) {
        precondition(capacity > 0, "history capacity must be positive")
        self.capacity = capacity
        self.maximumAge = maximumAge
        self.maximumBytes = maximumBytes
        entries = CircularBuffer(initialCapacity: min(capacity, 1024))
    }

    public var count: Int { entries.count }

    /// What an entry counts against `maximumBytes`: its strings, and a fixed share for the entry itself (the
    /// command and its place in the buffer), so that many tiny events are bounded too.
    public static func cost(of command: PublishCommand) -> Int {
        let target: Int
        switch command.target {
        case .everyone: target = 0
        case .topic(let name), .user(let name): target = name.utf8.count
        }
        return 96 + command.event.utf8.count + command.data.utf8.count + target
    }

    /// Records `command`, evicting the oldest entries past any bound. An event larger than `maximumBytes` on its
    /// own is not kept (it is counted as evicted: a client resuming from before it gets `reset`).
    public mutating func append(_ command: PublishCommand) {
        precondition(command.sequence > latestSequence, "history entries must come in sequence order")
        latestSequence = command.sequence
        entries.append(command)
        bytes += Self.cost(of: command)
        while entries.count > capacity || bytes > maximumBytes, !entries.isEmpty { evictFirst() }
        trim(now: command.publishedAt)
    }

    /// Drops entries older than `maximumAge` at `now` (milliseconds since 1970).
    public mutating func trim(now: Int64) {
        while let first = entries.first, now - first.publishedAt > maximumAge { evictFirst() }
    }

    private mutating func evictFirst() {
        let dropped = entries.removeFirst()
        bytes -= Self.cost(of: dropped)
        evictedThrough = max(evictedThrough, dropped.sequence)
    }

    /// Starts from a history kept elsewhere (a shared log's retained tail, or the previous program of this process):
    /// its bounds, and its events after `evictedThrough` (in sequence order; within this history's own bounds).
    public mutating func restore(evictedThrough: UInt64, latestSequence: UInt64, events: some Sequence<PublishCommand>) {
        note(evictedThrough: evictedThrough, latestSequence: evictedThrough)
        for command in events where command.sequence > self.latestSequence { append(command) }
        note(evictedThrough: evictedThrough, latestSequence: latestSequence)
    }

    /// Raises the known bounds (a restarted worker learns them from the supervisor's history).
    public mutating func note(evictedThrough: UInt64, latestSequence: UInt64) {
        self.evictedThrough = max(self.evictedThrough, evictedThrough)
        self.latestSequence = max(self.latestSequence, latestSequence)
    }

    /// Entries with a sequence number above `sequence`, oldest first.
    public func entries(after sequence: UInt64) -> [PublishCommand] {
        // Sequence numbers ascend, so binary-search the first one past `sequence`.
        var low = 0
        var high = entries.count
        while low < high {
            let middle = (low + high) / 2
            if entries[entries.index(entries.startIndex, offsetBy: middle)].sequence <= sequence {
                low = middle + 1
            } else {
                high = middle
            }
        }
        return Array(entries[entries.index(entries.startIndex, offsetBy: low)...])
    }

    /// What a stream resuming after `lastEventID` must get before it goes live.
    public enum Resumption: Equatable, Sendable {
        /// No id given: live events only.
        case live
        /// Replay these (already filtered for the user), then go live.
        case replay([PublishCommand])
        /// The id is from another epoch, older than the history, or unknown: send `reset` first, then go live.
        case reset
    }

    public func resumption(
        after lastEventID: String?, epoch: UInt64, isRecipient: (PublishTarget) -> Bool
    ) -> Resumption {
        guard let lastEventID else { return .live }
        guard let id = EventID(lastEventID), id.epoch == epoch, id.sequence >= evictedThrough,
            id.sequence <= latestSequence
        else { return .reset }
        return .replay(entries(after: id.sequence).filter { isRecipient($0.target) })
    }
}
