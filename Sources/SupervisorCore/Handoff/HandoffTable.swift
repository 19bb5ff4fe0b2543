import Shared
import Synchronization

/// What the accept thread needs of the shards, as of one moment: the hand-off link of each shard whose worker is
/// up (nil while it is down or starting). Immutable: the control plane publishes a new one whenever a shard
/// changes (`HandoffTablePublisher`), and the accept thread reads a whole table without waiting for anything.
final class HandoffTable: Sendable {
    /// Indexed by shard.
    let links: [HandoffLink?]
    /// The most connections one message to each shard's worker may carry (`HandoffBatch`): 1 for a worker of a
    /// release before batches, which an in-place upgrade keeps serving until a reload replaces it.
    let batchLimits: [Int]

    init(links: [HandoffLink?], batchLimits: [Int]) {
        precondition(links.count == batchLimits.count, "a batch limit for every shard")
        self.links = links
        self.batchLimits = batchLimits
    }

    static func empty(shardCount: Int) -> HandoffTable {
        HandoffTable(links: Array(repeating: nil, count: shardCount), batchLimits: Array(repeating: 1, count: shardCount))
    }
}

/// Hands the current `HandoffTable` from the control plane to the accept thread: the plane swaps in a new table
/// and rings `changed`; the accept thread, woken, takes the table. The lock guards one reference swap (never a
/// write, a `sendmsg` or a wait), so neither side ever waits on the other's work.
final class HandoffTablePublisher: Sendable {
    private let current: Mutex<HandoffTable>
    /// Rung after every publish; the accept thread's epoll watches it.
    let changed: EventCounter

    init(shardCount: Int) throws {
        current = Mutex(.empty(shardCount: shardCount))
        changed = try EventCounter()
    }

    func publish(_ table: HandoffTable) {
        current.withLock { $0 = table }
        changed.signal()
    }

    /// The latest table; clears the ring first, so a publish that follows is not missed.
    func take() -> HandoffTable {
        changed.clear()
        return current.withLock { $0 }
    }
}
