import NIOCore
import NIOEmbedded
import Shared
import Testing
@testable import WorkerCore

@Suite struct StreamDeliveryTests {
    let loop = EmbeddedEventLoop()
    let sockets: StreamSockets
    var clients: [String: StreamClient] = [:]
    var streams = LiveStreams(now: 0, maximumPerUser: 2)

    init() throws {
        sockets = try embeddedSockets(on: loop)
        for user in ["alice", "bob", "carol"] { try goLive(user) }
    }

    /// A connected socket that goes live as `user`'s stream (its client named `name` among the test's).
    mutating func goLive(_ user: String, as name: String? = nil) throws {
        let (socket, client) = try StreamClient.connected(to: sockets, as: user)
        clients[name ?? user] = client
        _ = streams.makeLive(user, socket: socket)
    }

    /// The frames `user`'s client received since the last call: a socket has no message boundaries, so every frame
    /// in these tests ends with a full stop, which splits them again.
    func received(_ user: String) throws -> [String] {
        guard let client = clients[user] else { return [] }
        return String(buffer: try client.read().bytes).split(separator: ".").map(String.init)
    }

    @Test func eachTargetReachesItsStreamsAndOnlyThemOnFlush() throws {
        var delivery = StreamDelivery(maximumPendingBytes: 1 << 20)
        let subscribers: [String: Set<String>] = ["news": ["alice", "dave"]]  // dave has no stream here
        delivery.queue(ByteBuffer(string: "topic."), for: .topic("news"), streams: streams, subscribers: subscribers)
        delivery.queue(ByteBuffer(string: "direct."), for: .user("bob"), streams: streams, subscribers: subscribers)
        delivery.queue(ByteBuffer(string: "direct-dave."), for: .user("dave"), streams: streams, subscribers: subscribers)
        #expect(try received("alice").isEmpty, "nothing leaves before the flush")
        delivery.flush(streams: streams)
        #expect(try received("alice") == ["topic"])
        #expect(try received("bob") == ["direct"])
        #expect(try received("carol").isEmpty)

        delivery.queue(ByteBuffer(string: "all."), for: .everyone, streams: streams, subscribers: subscribers)
        delivery.flush(streams: streams)
        for user in ["alice", "bob", "carol"] { #expect(try received(user) == ["all"]) }
    }

    /// Queued bytes count toward a stream's `--max-pending-bytes`: a batch is flushed before it grows past a quarter of it.
    @Test func aLargeBatchIsFlushedBeforeItCouldLookLikeASlowConsumer() throws {
        var delivery = StreamDelivery(maximumPendingBytes: 40)
        delivery.queue(ByteBuffer(string: "123456."), for: .user("alice"), streams: streams, subscribers: [:])
        #expect(try received("alice").isEmpty)
        delivery.queue(ByteBuffer(string: "abcdef."), for: .user("alice"), streams: streams, subscribers: [:])
        #expect(try received("alice") == ["123456"], "the first was flushed to make room for the second")
        delivery.flush(streams: streams)
        #expect(try received("alice") == ["abcdef"])
    }

    /// Several frames in one read reach each stream in publish order, whatever mix of targets carried them.
    @Test func aReadsFramesReachEachStreamInPublishOrder() throws {
        var delivery = StreamDelivery(maximumPendingBytes: 1 << 20)
        let subscribers: [String: Set<String>] = ["news": ["alice"]]
        delivery.queue(ByteBuffer(string: "A."), for: .everyone, streams: streams, subscribers: subscribers)
        delivery.queue(ByteBuffer(string: "B."), for: .topic("news"), streams: streams, subscribers: subscribers)
        delivery.queue(ByteBuffer(string: "C."), for: .everyone, streams: streams, subscribers: subscribers)
        delivery.queue(ByteBuffer(string: "D."), for: .user("bob"), streams: streams, subscribers: subscribers)
        #expect(try received("alice").isEmpty)
        delivery.flush(streams: streams)
        #expect(try received("alice") == ["A", "B", "C"])
        #expect(try received("bob") == ["A", "C", "D"])
        #expect(try received("carol") == ["A", "C"])
    }

    /// A stream that goes live after a broadcast was held (it replays the event from the history) is not sent it again.
    @Test func aStreamLiveOnlyAfterABroadcastIsNotSentItByTheFlush() throws {
        var test = self
        var delivery = StreamDelivery(maximumPendingBytes: 1 << 20)
        delivery.queue(ByteBuffer(string: "first."), for: .everyone, streams: test.streams, subscribers: [:])
        try test.goLive("dave")
        delivery.flush(streams: test.streams)
        #expect(try test.received("alice") == ["first"])
        #expect(try test.received("dave").isEmpty)
        delivery.queue(ByteBuffer(string: "second."), for: .everyone, streams: test.streams, subscribers: [:])
        try test.goLive("erin")
        delivery.queue(ByteBuffer(string: "third."), for: .everyone, streams: test.streams, subscribers: [:])
        delivery.flush(streams: test.streams)
        #expect(try test.received("dave") == ["second", "third"])
        #expect(try test.received("erin") == ["third"])
    }

    /// A user with several streams (tabs) gets every frame meant for them on each.
    @Test func everyStreamOfAUserWithSeveralGetsTheirFrames() throws {
        var test = self
        try test.goLive("alice", as: "alice-2")
        var delivery = StreamDelivery(maximumPendingBytes: 1 << 20)
        delivery.queue(ByteBuffer(string: "topic."), for: .topic("news"), streams: test.streams, subscribers: ["news": ["alice"]])
        delivery.queue(ByteBuffer(string: "direct."), for: .user("alice"), streams: test.streams, subscribers: [:])
        delivery.queue(ByteBuffer(string: "all."), for: .everyone, streams: test.streams, subscribers: [:])
        delivery.flush(streams: test.streams)
        #expect(try test.received("alice") == ["topic", "direct", "all"])
        #expect(try test.received("alice-2") == ["topic", "direct", "all"])
        #expect(try test.received("bob") == ["all"])
    }
}
