import NIOCore
import NIOEmbedded
import Shared
import Testing

@Suite struct ControlProtocolTests {
    static let messages: [ControlMessage] = [
        .hello(WorkerHello(shard: 3, pid: 4242)),
        .stats(WorkerStats(clients: 17, topics: ["news": 3, "scores:live": 14, "ünïcode": 1])),
        .stats(WorkerStats()),
        .pong(.max),
        .publish(PublishCommand(target: .everyone, event: "newEvent", data: #"{"a":[1,2,{"b":null}]}"#, sequence: 1, publishedAt: 1_800_000_000_000)),
        .publish(PublishCommand(target: .topic("news"), event: "headline", data: "\"x\"", sequence: 2, publishedAt: 3)),
        .publish(PublishCommand(target: .user("42"), event: "reward", data: "", sequence: .max, publishedAt: -1)),
        .historyEntry(PublishCommand(target: .topic("t"), event: "old", data: "1", sequence: 9, publishedAt: 8)),
        .historyEnd(HistoryBounds(evictedThrough: 4, latestSequence: 12)),
        .ping(7),
        .shutdown,
    ]

    @Test func everyMessageRoundTrips() throws {
        var buffer = ByteBuffer()
        for message in Self.messages { ControlFrame.encode(message, into: &buffer) }
        var decoded: [ControlMessage] = []
        while let message = try ControlFrame.decode(from: &buffer) { decoded.append(message) }
        #expect(decoded == Self.messages)
        #expect(buffer.readableBytes == 0)
    }

    @Test func partialReadsWaitForTheWholeFrame() throws {
        var whole = ByteBuffer()
        for message in Self.messages { ControlFrame.encode(message, into: &whole) }
        // Through the real NIO decoder, one byte at a time.
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(ControlFrameDecoder()))
        for byte in whole.readableBytesView {
            try channel.writeInbound(ByteBuffer(bytes: [byte]))
        }
        var decoded: [ControlMessage] = []
        while let message = try channel.readInbound(as: ControlMessage.self) { decoded.append(message) }
        #expect(decoded == Self.messages)
        #expect(try channel.finish().isClean)
    }

    @Test func anIncompleteFrameLeavesTheBufferUntouched() throws {
        var whole = ByteBuffer()
        ControlFrame.encode(.ping(1), into: &whole)
        var partial = whole.getSlice(at: 0, length: whole.readableBytes - 1)!
        #expect(try ControlFrame.decode(from: &partial) == nil)
        #expect(partial.readableBytes == whole.readableBytes - 1)
    }

    func decodeError(_ bytes: [UInt8]) -> ControlProtocolError.Code? {
        var buffer = ByteBuffer(bytes: bytes)
        do {
            _ = try ControlFrame.decode(from: &buffer)
            return nil
        } catch {
            return error.code
        }
    }

    @Test func garbageIsRefusedWithAStableCode() {
        #expect(decodeError([0, 0, 0, 2, 9, 1]) == .unsupportedVersion)
        #expect(decodeError([0, 0, 0, 2, 1, 99]) == .unknownKind)
        #expect(decodeError([0xff, 0xff, 0xff, 0xff]) == .badLength)
        #expect(decodeError([0, 0, 0, 1, 1]) == .badLength)
        #expect(decodeError([0, 0, 0, 3, 1, 17, 0]) == .malformed)  // a ping cut short
        #expect(decodeError([0, 0, 0, 11, 1, 17, 0, 0, 0, 0, 0, 0, 0, 1, 0xaa]) == .malformed)  // bytes left over
        // An unknown publish target after the sequence number and timestamp.
        #expect(decodeError([0, 0, 0, 23, 1, 16] + [UInt8](repeating: 0, count: 16) + [9, 0, 0, 0, 0]) == .malformed)
        #expect(decodeError([0, 0, 0, 10, 1, 2, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]) == .malformed)  // absurd topic count
    }

    @Test func garbageClosesTheNIOPipelineWithAnError() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(ControlFrameDecoder()))
        #expect(throws: ControlProtocolError.self) { try channel.writeInbound(ByteBuffer(bytes: [0, 0, 0, 2, 42, 1])) }
        _ = try? channel.finish()
    }

    @Test func handoffRoundTripsAndRefusesGarbage() throws {
        let handoff = Handoff(route: .subscribe, userID: "user-ü-1", tokenExpiry: 1_800_000_000)
        #expect(try Handoff(decoding: handoff.encoded()) == handoff)
        let noExpiry = Handoff(route: .stream, userID: "9", tokenExpiry: nil)
        #expect(try Handoff(decoding: noExpiry.encoded()) == noExpiry)
        let resuming = Handoff(
            route: .stream, userID: "user-7", tokenExpiry: 5, lastEventID: "1796034736633-42", origin: "https://app.example")
        #expect(try Handoff(decoding: resuming.encoded()) == resuming)
        let emptyID = Handoff(route: .stream, userID: "u", tokenExpiry: 5, lastEventID: "", origin: nil)
        #expect(try Handoff(decoding: emptyID.encoded()).lastEventID == "", "an empty Last-Event-ID is not an absent one")

        func code(_ bytes: [UInt8]) -> ControlProtocolError.Code? {
            do {
                _ = try Handoff(decoding: bytes)
                return nil
            } catch {
                return error.code
            }
        }
        let valid = resuming.encoded()
        #expect(code([]) == .unsupportedVersion)
        #expect(code([1] + valid.dropFirst()) == .unsupportedVersion)
        #expect(code([2, 9] + valid.dropFirst(2)) == .malformed, "unknown route")
        #expect(code(Array(valid.prefix(25))) == .malformed, "cut inside the optional strings")
        #expect(code(Array(valid.dropLast(1))) == nil, "a shorter user id is still a user id")
        #expect(code(Array(Handoff(route: .stream, userID: "x", tokenExpiry: nil).encoded().dropLast())) == .malformed, "no user")
    }
}
