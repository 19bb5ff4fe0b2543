import NIOCore
import NIOEmbedded
import Shared
import Testing
@testable import WorkerCore

/// The Last-Event-ID seam, through the real hub: a stream resuming gets exactly what its user missed, in order,
/// then live events, with no gap and no duplicate where the two meet.
@Suite struct LastEventIDTests {
    typealias F = HubFixture

    @Test func aResumingStreamGetsExactlyWhatItsUserMissedThenLiveEvents() throws {
        let fixture = HubFixture()
        fixture.historyArrived()
        try fixture.hub.subscribe(userID: "alice", topics: ["news"])
        fixture.publish(.everyone, .topic("news"), .topic("sport"), .user("alice"), .user("bob"), .everyone)
        // Published in the same read as the stream arrives, not flushed yet: it must come once, from the replay.
        fixture.publish(.topic("news"), flush: false)
        let alice = try fixture.openStream("alice", lastEventID: F.id(1))
        fixture.hub.flushPublished()
        fixture.publish(.everyone, .topic("sport"), .user("alice"), .user("bob"), .topic("news"))

        let received = try Received(alice)
        #expect(received.head?.hasPrefix("HTTP/1.1 200 OK\r\n") == true)
        #expect(received.body.hasPrefix("retry: 3000\n"))
        #expect(received.names.first == "connected")
        #expect(!received.names.contains("reset"))
        // Missed: 2 (news), 4 (alice), 6 (everyone), 7 (news); then live: 8 (everyone), 10 (alice), 12 (news).
        #expect(received.ids == [2, 4, 6, 7, 8, 10, 12].map(F.id))
    }

    @Test func theLatestIdReplaysNothingAndNoIdReplaysNothing() throws {
        let fixture = HubFixture()
        fixture.historyArrived()
        fixture.publish(.everyone, .everyone)
        let upToDate = try fixture.openStream("alice", lastEventID: F.id(2))
        let fresh = try fixture.openStream("bob")
        fixture.publish(.everyone)
        #expect(try Received(upToDate).ids == [F.id(3)])
        let bob = try Received(fresh)
        #expect(bob.ids == [F.id(3)])
        #expect(bob.names == ["connected", "e"])
    }

    @Test(arguments: [
        "1699999999999-3",  // another epoch (a previous run)
        "\(HubFixture.epoch)-1",  // older than the history, which kept 3 events of 5
        "\(HubFixture.epoch)-9",  // not published yet
        "not-an-id",
    ])
    func anIdOutsideTheHistoryGetsResetThenLiveEvents(lastEventID: String) throws {
        let fixture = HubFixture(historySize: 3)
        fixture.historyArrived()
        fixture.publish(.everyone, .everyone, .everyone, .everyone, .everyone)
        let stream = try fixture.openStream("alice", lastEventID: lastEventID)
        fixture.publish(.everyone)
        let received = try Received(stream)
        #expect(received.names == ["connected", "reset", "e"])
        #expect(received.events[1].data == HubJSON.encode(ResetEventData(lastEventId: lastEventID)))
        #expect(received.ids == [F.id(6)])
    }

    @Test func theOldestIdTheHistoryStillCoversReplays() throws {
        let fixture = HubFixture(historySize: 3)
        fixture.historyArrived()
        fixture.publish(.everyone, .everyone, .everyone, .everyone, .everyone)
        let received = try Received(try fixture.openStream("alice", lastEventID: F.id(2)))
        #expect(received.ids == [3, 4, 5].map(F.id))
        #expect(!received.names.contains("reset"))
    }

    @Test func aMigratedStreamContinuesAfterItsSequenceWithNoGreeting() throws {
        let fixture = HubFixture()
        fixture.historyArrived()
        try fixture.hub.subscribe(userID: "alice", topics: ["news"])
        fixture.publish(.everyone, .topic("news"), .user("bob"), .user("alice"), .topic("sport"))
        let migrated = try fixture.migrateIn("alice", resumeAfter: 2)
        fixture.publish(.topic("news"))
        let received = try Received(migrated)
        #expect(received.head == nil, "the old worker wrote the head")
        #expect(!received.body.contains("retry:"))
        #expect(received.names == ["e", "e"])
        #expect(received.ids == [4, 6].map(F.id))
    }

    @Test func aMigratedStreamWithNothingMissedWritesNothingUntilLive() throws {
        let fixture = HubFixture()
        fixture.historyArrived()
        fixture.publish(.everyone)
        let migrated = try fixture.migrateIn("alice", resumeAfter: 1)
        #expect(try migrated.read().bytes.readableBytes == 0)
        fixture.publish(.everyone)
        #expect(try Received(migrated).ids == [F.id(2)])
    }

    @Test func aStreamArrivingBeforeTheHistoryWaitsForIt() throws {
        let fixture = HubFixture()
        let early = try fixture.openStream("alice", lastEventID: F.id(1))
        let migrated = try fixture.migrateIn("bob", resumeAfter: 2)
        #expect(try early.read().bytes.readableBytes == 0, "nothing is sent from a history with a hole in it")
        #expect(try migrated.read().bytes.readableBytes == 0)
        for _ in 1...3 { fixture.hub.recordHistory(fixture.nextEvent(.everyone)) }
        #expect(try early.read().bytes.readableBytes == 0)
        fixture.historyArrived()
        fixture.publish(.everyone)
        let alice = try Received(early)
        #expect(alice.names.first == "connected")
        #expect(alice.ids == [2, 3, 4].map(F.id))
        #expect(try Received(migrated).ids == [3, 4].map(F.id))
    }
}
