import Shared
import Testing

@Suite struct EventHistoryTests {
    func command(_ sequence: UInt64, _ target: PublishTarget = .everyone, at time: Int64 = 1000) -> PublishCommand {
        PublishCommand(target: target, event: "e", data: String(sequence), sequence: sequence, publishedAt: time)
    }

    @Test func eventIDsRoundTrip() {
        #expect(EventID("1764489600000-42") == EventID(epoch: 1_764_489_600_000, sequence: 42))
        #expect(EventID(epoch: 7, sequence: 9).description == "7-9")
        for bad in ["", "12", "a-1", "1-b", "1-2-3", "-1", "1-"] { #expect(EventID(bad) == nil, "\(bad)") }
    }

    @Test func boundedByCountAndAge() {
        var history = EventHistory(capacity: 3, maximumAge: 500)
        for sequence in 1...5 { history.append(command(UInt64(sequence))) }
        #expect(history.entries(after: 0).map(\.sequence) == [3, 4, 5])
        #expect(history.evictedThrough == 2)
        history.trim(now: 1400)
        #expect(history.count == 3)
        history.trim(now: 1501)
        #expect(history.count == 0)
        #expect(history.evictedThrough == 5)
        #expect(history.latestSequence == 5)
    }

    /// 10,000 events of 60 KB made the supervisor hold 2 GB: the history is bounded by bytes too, oldest first.
    @Test func boundedByBytes() {
        let big = String(repeating: "x", count: 60_000)
        let bound = 1_000_000
        var history = EventHistory(capacity: 10_000, maximumAge: 1_000_000, maximumBytes: bound)
        for sequence in 1...200 {
            history.append(PublishCommand(target: .topic("t"), event: "e", data: big, sequence: UInt64(sequence), publishedAt: 1000))
            #expect(history.bytes <= bound)
        }
        let kept = bound / EventHistory.cost(of: PublishCommand(target: .topic("t"), event: "e", data: big, sequence: 1))
        #expect(history.count == kept)
        #expect(history.entries(after: 0).map(\.sequence) == Array(UInt64(200 - kept + 1)...200))
        #expect(history.evictedThrough == UInt64(200 - kept))
        // A client that last saw an evicted id is told to reset; one within the bound replays.
        #expect(history.resumption(after: "5-3", epoch: 5, isRecipient: { _ in true }) == .reset)
        if case .replay(let missed) = history.resumption(after: "5-198", epoch: 5, isRecipient: { _ in true }) {
            #expect(missed.map(\.sequence) == [199, 200])
        } else {
            Issue.record("expected a replay")
        }
        // An event larger than the whole bound is not kept at all (and counts as evicted).
        history.append(PublishCommand(target: .everyone, event: "e", data: String(repeating: "y", count: 2_000_000), sequence: 201, publishedAt: 1000))
        #expect(history.count == 0 && history.bytes == 0 && history.evictedThrough == 201)
        // Tiny events are bounded by their fixed share.
        var tiny = EventHistory(capacity: 1_000_000, maximumAge: 1_000_000, maximumBytes: 96 * 10 + 30)
        for sequence in 1...100 { tiny.append(command(UInt64(sequence))) }
        #expect(tiny.count < 10)
    }

    @Test func entriesAfterASequenceAreFoundInOrder() {
        var history = EventHistory(capacity: 100, maximumAge: 1_000_000)
        for sequence in stride(from: 2, through: 40, by: 2) { history.append(command(UInt64(sequence))) }
        #expect(history.entries(after: 0).count == 20)
        #expect(history.entries(after: 29).map(\.sequence) == [30, 32, 34, 36, 38, 40])
        #expect(history.entries(after: 30).map(\.sequence) == [32, 34, 36, 38, 40])
        #expect(history.entries(after: 40).isEmpty)
    }

    @Test func resumptionReplaysWhatTheUserWouldHaveReceived() {
        var history = EventHistory(capacity: 4, maximumAge: 1_000_000)
        history.append(command(1))
        history.append(command(2, .topic("news")))
        history.append(command(3, .user("bob")))
        history.append(command(4, .user("alice")))
        history.append(command(5, .topic("scores")))
        let forAlice: (PublishTarget) -> Bool = { target in
            switch target {
            case .everyone: true
            case .topic(let topic): topic == "scores"
            case .user(let user): user == "alice"
            }
        }
        #expect(history.resumption(after: nil, epoch: 9, isRecipient: forAlice) == .live)
        #expect(history.resumption(after: "9-2", epoch: 9, isRecipient: forAlice) == .replay([command(4, .user("alice")), command(5, .topic("scores"))]))
        #expect(history.resumption(after: "9-1", epoch: 9, isRecipient: forAlice) == .replay([command(4, .user("alice")), command(5, .topic("scores"))]))
        #expect(history.resumption(after: "9-5", epoch: 9, isRecipient: forAlice) == .replay([]))
        #expect(history.resumption(after: "9-0", epoch: 9, isRecipient: forAlice) == .reset, "event 1 is gone")
        #expect(history.resumption(after: "8-3", epoch: 9, isRecipient: forAlice) == .reset, "another epoch")
        #expect(history.resumption(after: "9-6", epoch: 9, isRecipient: forAlice) == .reset, "an id from the future")
        #expect(history.resumption(after: "garbage", epoch: 9, isRecipient: forAlice) == .reset)
    }
}
