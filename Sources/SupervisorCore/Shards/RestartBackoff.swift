/// How long a shard waits before its worker is started again: 100 ms after a first failure, doubling with each
/// failure in a row, at most 10 s. A worker that ran for `forgivenAfter` before it died starts the count over, so
/// one crash a day never waits long, and a crash loop does not spin.
public struct RestartBackoff: Sendable, Equatable {
    public var first: Duration = .milliseconds(100)
    public var longest: Duration = .seconds(10)
    public var forgivenAfter: Duration = .seconds(30)

    public init() {}

    /// The pause before the next start, after `failures` failures in a row (1 for the first).
    public func delay(afterFailures failures: Int) -> Duration {
        guard failures > 1 else { return first }
        return min(first * (1 << min(failures - 1, 16)), longest)
    }

    /// The failures in a row once a worker that ran for `ranFor` has died, after `previous` before it.
    public func failures(after previous: Int, ranFor: Duration) -> Int {
        ranFor > forgivenAfter ? 1 : previous + 1
    }
}
