/// Keys (a worker's users with a live stream) by the second their token expires: one timer serves them all,
/// where a scheduled task per stream would cost more memory than the rest of an idle stream's state.
///
/// The owner records each key's second beside the key (so it can `cancel` it when the stream closes or is
/// replaced): nothing is left behind by a churn of short streams with long tokens.
public struct ExpiryWheel<Key: Hashable & Sendable>: Sendable {
    private var keysBySecond: [Int64: Set<Key>] = [:]
    /// Every second up to this one has been handed out by `takeDue`.
    public private(set) var checkedThrough: Int64

    public init(now: Int64) {
        checkedThrough = now
    }

    /// Keys waiting, over every second.
    public var count: Int { keysBySecond.values.reduce(0) { $0 + $1.count } }

    /// Seconds with keys waiting.
    var secondCount: Int { keysBySecond.count }

    /// Records `key` to expire at `second`; false (nothing recorded) when that second is already past: the
    /// caller expires it at once.
    public mutating func schedule(_ key: Key, at second: Int64) -> Bool {
        guard second > checkedThrough else { return false }
        keysBySecond[second, default: []].insert(key)
        return true
    }

    /// Forgets `key` at `second` (its stream closed or was replaced first).
    public mutating func cancel(_ key: Key, at second: Int64) {
        guard keysBySecond[second]?.remove(key) != nil, keysBySecond[second]?.isEmpty == true else { return }
        keysBySecond[second] = nil
    }

    /// Removes and returns every key due by `now`, with its second. Walks the seconds elapsed since the last call,
    /// or the seconds waiting when fewer (after a jump of the wall clock).
    public mutating func takeDue(now: Int64) -> [(key: Key, second: Int64)] {
        guard now > checkedThrough else { return [] }
        let seconds: [Int64] =
            now - checkedThrough <= Int64(keysBySecond.count)
            ? Array((checkedThrough + 1)...now) : keysBySecond.keys.filter { $0 <= now }
        checkedThrough = now
        var due: [(key: Key, second: Int64)] = []
        for second in seconds {
            for key in keysBySecond.removeValue(forKey: second) ?? [] { due.append((key, second)) }
        }
        return due
    }
}
