import Testing
@testable import WorkerCore

@Suite struct ExpiryWheelTests {
    /// The latest `exp` a token may carry (`TokenVerifier.latestExpiry`).
    static let latestExpiry: Int64 = 253_402_300_799

    @Test func keysComeDueAtTheirSecondOnce() {
        var wheel = ExpiryWheel<String>(now: 100)
        let scheduled = [wheel.schedule("a", at: 101), wheel.schedule("b", at: 103), wheel.schedule("c", at: 103)]
        #expect(scheduled == [true, true, true])
        let past = wheel.schedule("late", at: 100)
        #expect(!past, "a second already past is expired at once by the caller")
        let none = wheel.takeDue(now: 100)
        let first = wheel.takeDue(now: 102)
        let second = wheel.takeDue(now: 103)
        let again = wheel.takeDue(now: 103)
        #expect(none.isEmpty)
        #expect(first.map(\.key) == ["a"] && first.map(\.second) == [101])
        #expect(Set(second.map(\.key)) == ["b", "c"])
        #expect(again.isEmpty && wheel.count == 0 && wheel.secondCount == 0)
    }

    /// Each closed stream used to leave its entry until its token expired: a churn of short streams with long
    /// tokens grew the map without bound. A cancelled entry is gone at once.
    @Test func aChurnOfShortStreamsLeavesNothingBehind() {
        var wheel = ExpiryWheel<String>(now: 1_000)
        var scheduled = 0
        for n in 0..<30_000 {
            let key = "churn-\(n)"
            let second = Int64(1_000 + 3_600 + n % 7)
            if wheel.schedule(key, at: second) { scheduled += 1 }
            wheel.cancel(key, at: second)
        }
        #expect(scheduled == 30_000)
        #expect(wheel.count == 0 && wheel.secondCount == 0)
        // Cancelling what is not there (another second, another key) changes nothing.
        _ = wheel.schedule("kept", at: 2_000)
        wheel.cancel("kept", at: 2_001)
        wheel.cancel("other", at: 2_000)
        #expect(wheel.count == 1)
    }

    @Test func aJumpOfTheClockWalksOnlyTheSecondsWaiting() {
        var wheel = ExpiryWheel<Int>(now: 0)
        _ = wheel.schedule(1, at: 5)
        _ = wheel.schedule(2, at: 9_000_000_000)
        _ = wheel.schedule(3, at: Self.latestExpiry)
        let jumped = wheel.takeDue(now: 9_000_000_000)
        let last = wheel.takeDue(now: Self.latestExpiry)
        #expect(jumped.map(\.key).sorted() == [1, 2])
        #expect(last.map(\.key) == [3])
    }
}
