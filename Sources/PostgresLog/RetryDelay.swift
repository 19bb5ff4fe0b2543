/// How long to wait before the next attempt after `failures` in a row: doubling from 100 ms, at most 5 s.
struct RetryDelay: Sendable {
    var first: Duration = .milliseconds(100)
    var longest: Duration = .seconds(5)

    func after(failures: Int) -> Duration {
        let doubled = first * (1 << min(max(failures - 1, 0), 16))
        return min(doubled, longest)
    }
}
