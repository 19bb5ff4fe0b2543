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
        let replaced = streams.makeLive("alice", channel: alice, descriptor: -1)
        let expiry = streams.expire("alice", channel: alice, at: 102)
        let early = streams.takeExpired(now: 101)
        let due = streams.takeExpired(now: 102)
        let again = streams.takeExpired(now: 110)
        #expect(replaced == nil && expiry == .scheduled && early.isEmpty)
        #expect(due.map(\.userID) == ["alice"] && due.first?.channel === alice)
        #expect(again.isEmpty)
        #expect(streams.isLive("alice"), "told, the stream stays until its channel closes")
    }

    @Test func aPastSecondIsDueAtOnceAndAnOldChannelIsIgnored() {
        var streams = LiveStreams(now: 100)
        let first = channel()
        let second = channel()
        _ = streams.makeLive("alice", channel: first, descriptor: -1)
        let past = streams.expire("alice", channel: first, at: 100)
        let told = streams.expireNow("alice")
        let replaced = streams.makeLive("alice", channel: second, descriptor: -1)
        let old = streams.expire("alice", channel: first, at: 200)
        let removed = streams.remove("alice", channel: first)
        #expect(past == .due && told === first)
        #expect(replaced?.channel === first && old == .notCurrent)
        #expect(!removed, "the replaced channel closing leaves the new stream")
        #expect(streams.count == 1)
    }

    /// A replaced or closed stream's expiry goes with it: the next stream is not ended by the old token.
    @Test func replacingOrClosingAStreamCancelsItsExpiry() {
        var streams = LiveStreams(now: 100)
        let first = channel()
        let second = channel()
        _ = streams.makeLive("alice", channel: first, descriptor: -1)
        let firstExpiry = streams.expire("alice", channel: first, at: 105)
        _ = streams.makeLive("alice", channel: second, descriptor: -1)
        let afterReplace = streams.takeExpired(now: 105)
        let secondExpiry = streams.expire("alice", channel: second, at: 107)
        let removed = streams.remove("alice", channel: second)
        let afterClose = streams.takeExpired(now: 107)
        #expect(firstExpiry == .scheduled && afterReplace.isEmpty)
        #expect(secondExpiry == .scheduled && removed)
        #expect(afterClose.isEmpty && streams.count == 0)
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
