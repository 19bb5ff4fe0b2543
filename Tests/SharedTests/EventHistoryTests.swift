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
