import NIOCore
import NIOEmbedded
import Shared
import Testing
@testable import WorkerCore

@Suite struct LiveStreamsTests {
    let loop = EmbeddedEventLoop()
    let sockets: StreamSockets
    /// The clients' ends, kept open while the test runs.
    private let clients = ClientEnds()

    init() throws {
        sockets = try embeddedSockets(on: loop)
    }

    func channel() throws -> StreamSocket {
        let (socket, client) = try StreamClient.connected(to: sockets, as: "alice")
        clients.all.append(client)
        return socket
    }

    @Test func aStreamEndsAtItsTokensSecondOnce() throws {
        var streams = LiveStreams(now: 100)
        let alice = try channel()
        let (stream, replaced) = streams.makeLive("alice", socket: alice)
        let expiry = streams.expire("alice", ordinal: stream.ordinal, at: 102)
        let early = streams.takeExpired(now: 101)
        let due = streams.takeExpired(now: 102)
        let again = streams.takeExpired(now: 110)
        #expect(replaced.isEmpty && expiry == .scheduled && early.isEmpty)
        #expect(due.map(\.userID) == ["alice"] && due.first?.socket === alice)
        #expect(again.isEmpty)
        #expect(streams.isLive("alice"), "told, the stream stays until its channel closes")
    }

    @Test func aPastSecondIsDueAtOnceAndAnOldChannelIsIgnored() throws {
        var streams = LiveStreams(now: 100)
        let first = try channel()
        let second = try channel()
        let firstOrdinal = streams.makeLive("alice", socket: first).stream.ordinal
        let past = streams.expire("alice", ordinal: firstOrdinal, at: 100)
        let told = streams.expireNow("alice", ordinal: firstOrdinal)
        let replaced = streams.makeLive("alice", socket: second).replaced
        let old = streams.expire("alice", ordinal: firstOrdinal, at: 200)
        let removed = streams.remove("alice", socket: first)
        #expect(past == .due && told === first)
        #expect(replaced.map(\.socket) .count == 1 && replaced.first?.socket === first && old == .notCurrent)
        #expect(removed.removed == nil, "the replaced channel closing leaves the new stream")
        #expect(streams.count == 1)
    }

    /// A replaced or closed stream's expiry goes with it: the next stream is not ended by the old token.
    @Test func replacingOrClosingAStreamCancelsItsExpiry() throws {
        var streams = LiveStreams(now: 100)
        let first = try channel()
        let second = try channel()
        let firstOrdinal = streams.makeLive("alice", socket: first).stream.ordinal
        let firstExpiry = streams.expire("alice", ordinal: firstOrdinal, at: 105)
        let secondOrdinal = streams.makeLive("alice", socket: second).stream.ordinal
        let afterReplace = streams.takeExpired(now: 105)
        let secondExpiry = streams.expire("alice", ordinal: secondOrdinal, at: 107)
        let removed = streams.remove("alice", socket: second)
        let afterClose = streams.takeExpired(now: 107)
        #expect(firstExpiry == .scheduled && afterReplace.isEmpty)
        #expect(secondExpiry == .scheduled && removed.removed?.socket === second && removed.userLeft)
        #expect(afterClose.isEmpty && streams.count == 0)
    }

    /// With several tabs allowed, each stream has its own expiry, and the oldest is replaced past the limit.
    @Test func severalStreamsOfAUserEachExpireAndTheOldestIsReplaced() throws {
        var streams = LiveStreams(now: 100, maximumPerUser: 2)
        let tabs = try (0..<3).map { _ in try channel() }
        let first = streams.makeLive("alice", socket: tabs[0])
        let second = streams.makeLive("alice", socket: tabs[1])
        #expect(first.replaced.isEmpty && second.replaced.isEmpty && streams.count == 2)
        #expect(streams.expire("alice", ordinal: first.stream.ordinal, at: 110) == .scheduled)
        #expect(streams.expire("alice", ordinal: second.stream.ordinal, at: 120) == .scheduled)
        let third = streams.makeLive("alice", socket: tabs[2])
        #expect(third.replaced.count == 1 && third.replaced.first?.socket === tabs[0] && streams.count == 2)
        #expect(streams.takeExpired(now: 115).isEmpty, "the replaced stream's expiry went with it")
        #expect(streams.takeExpired(now: 120).map(\.socket).first === tabs[1])
        let closed = (streams.remove("alice", socket: tabs[1]), streams.remove("alice", socket: tabs[2]))
        #expect(closed.0.removed?.socket === tabs[1] && !closed.0.userLeft)
        #expect(closed.1.removed?.socket === tabs[2] && closed.1.userLeft)
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
        #expect(try later.read().bytes.readableBytes == 0)
        fixture.hub.expireDueStreams(now: now + 60)
        let bob = try Received(later)
        #expect(bob.names == ["token-expired"] && bob.ended)
        #expect(bob.events.first?.data == #"{"reason":"token-expired"}"#)
    }
}

/// Clients' ends a test holds open (a struct's tests cannot grow a stored array themselves).
final class ClientEnds {
    var all: [StreamClient] = []
}
