import NIOCore
import NIOEmbedded
import Shared
import Testing
@testable import WorkerCore

@Suite struct LiveStreamsTests {
    let loop = EmbeddedEventLoop()

    func channel() -> EmbeddedChannel { EmbeddedChannel(loop: loop) }

    @Test func aStreamEndsAtItsTokensSecondOnce() {
        var streams = LiveStreams(now: 100)
        let alice = channel()
        let (stream, replaced) = streams.makeLive("alice", channel: alice, descriptor: -1)
        let expiry = streams.expire("alice", ordinal: stream.ordinal, at: 102)
        let early = streams.takeExpired(now: 101)
        let due = streams.takeExpired(now: 102)
        let again = streams.takeExpired(now: 110)
        #expect(replaced.isEmpty && expiry == .scheduled && early.isEmpty)
        #expect(due.map(\.userID) == ["alice"] && due.first?.channel === alice)
        #expect(again.isEmpty)
        #expect(streams.isLive("alice"), "told, the stream stays until its channel closes")
    }

    @Test func aPastSecondIsDueAtOnceAndAnOldChannelIsIgnored() {
        var streams = LiveStreams(now: 100)
        let first = channel()
        let second = channel()
        let firstOrdinal = streams.makeLive("alice", channel: first, descriptor: -1).stream.ordinal
        let past = streams.expire("alice", ordinal: firstOrdinal, at: 100)
        let told = streams.expireNow("alice", ordinal: firstOrdinal)
        let replaced = streams.makeLive("alice", channel: second, descriptor: -1).replaced
        let old = streams.expire("alice", ordinal: firstOrdinal, at: 200)
        let removed = streams.remove("alice", channel: first)
        #expect(past == .due && told === first)
        #expect(replaced.map(\.channel) .count == 1 && replaced.first?.channel === first && old == .notCurrent)
        #expect(removed.removed == nil, "the replaced channel closing leaves the new stream")
        #expect(streams.count == 1)
    }

    /// A replaced or closed stream's expiry goes with it: the next stream is not ended by the old token.
    @Test func replacingOrClosingAStreamCancelsItsExpiry() {
        var streams = LiveStreams(now: 100)
        let first = channel()
        let second = channel()
        let firstOrdinal = streams.makeLive("alice", channel: first, descriptor: -1).stream.ordinal
        let firstExpiry = streams.expire("alice", ordinal: firstOrdinal, at: 105)
        let secondOrdinal = streams.makeLive("alice", channel: second, descriptor: -1).stream.ordinal
        let afterReplace = streams.takeExpired(now: 105)
        let secondExpiry = streams.expire("alice", ordinal: secondOrdinal, at: 107)
        let removed = streams.remove("alice", channel: second)
        let afterClose = streams.takeExpired(now: 107)
        #expect(firstExpiry == .scheduled && afterReplace.isEmpty)
        #expect(secondExpiry == .scheduled && removed.removed?.channel === second && removed.userLeft)
        #expect(afterClose.isEmpty && streams.count == 0)
    }

    /// With several tabs allowed, each stream has its own expiry, and the oldest is replaced past the limit.
    @Test func severalStreamsOfAUserEachExpireAndTheOldestIsReplaced() {
        var streams = LiveStreams(now: 100, maximumPerUser: 2)
        let tabs = (0..<3).map { _ in channel() }
        let first = streams.makeLive("alice", channel: tabs[0], descriptor: -1)
        let second = streams.makeLive("alice", channel: tabs[1], descriptor: -1)
        #expect(first.replaced.isEmpty && second.replaced.isEmpty && streams.count == 2)
        #expect(streams.expire("alice", ordinal: first.stream.ordinal, at: 110) == .scheduled)
        #expect(streams.expire("alice", ordinal: second.stream.ordinal, at: 120) == .scheduled)
        let third = streams.makeLive("alice", channel: tabs[2], descriptor: -1)
        #expect(third.replaced.count == 1 && third.replaced.first?.channel === tabs[0] && streams.count == 2)
        #expect(streams.takeExpired(now: 115).isEmpty, "the replaced stream's expiry went with it")
        #expect(streams.takeExpired(now: 120).map(\.channel).first === tabs[1])
        let closed = (streams.remove("alice", channel: tabs[1]), streams.remove("alice", channel: tabs[2]))
        #expect(closed.0.removed?.channel === tabs[1] && !closed.0.userLeft)
        #expect(closed.1.removed?.channel === tabs[2] && closed.1.userLeft)
        #expect(!streams.isLive("alice") && streams.count == 0)
    }

    /// Through the hub: the stream is told `token-expired` and its body ends.
    @Test func theHubEndsAStreamWhoseTokenExpires() throws {
        let fixture = HubFixture()
        fixture.historyArrived()
        let now = WallClock.seconds()
        let expired = try fixture.openStream("alice", tokenExpiry: now - 1)
        let later = try fixture.openStream("bob", tokenExpiry: now + 60)
        let told = try Received(expired)
        #expect(told.names == ["connected", "token-expired"] && told.ended)
        #expect(try Received(later).names == ["connected"])
        fixture.hub.expireDueStreams(now: now + 59)
        #expect(try later.readOutbound(as: ByteBuffer.self) == nil)
        fixture.hub.expireDueStreams(now: now + 60)
        let bob = try Received(later)
        #expect(bob.names == ["token-expired"] && bob.ended)
        #expect(bob.events.first?.data == #"{"reason":"token-expired"}"#)
    }
}
