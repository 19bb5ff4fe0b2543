import Shared
import Testing

/// The batch layout (`HandoffBatch`): what the supervisor writes, the worker reads back entry by entry, and anything
/// else is refused with a stable code rather than read wrongly.
@Suite struct HandoffBatchTests {
    static func payload(_ user: String) throws -> [UInt8] {
        try Handoff(route: .stream, userID: user, tokenExpiry: 1_900_000_000, lastEventID: "41", origin: "https://app.example").encoded()
    }

    /// The bytes a batch sends, as the receiver sees them.
    static func sentBytes(_ batch: HandoffBatch) throws -> [UInt8] {
        let (ours, theirs) = try Syscall.socketPair(type: .seqpacket)
        defer {
            Syscall.close(ours)
            Syscall.close(theirs)
        }
        try batch.send(over: ours)
        let received = try #require(try DescriptorPassing.receive(from: theirs, maximumDescriptors: HandoffBatch.maximumCount))
        received.descriptors.forEach(Syscall.close)
        return received.payload
    }

    @Test func entriesComeBackInOrder() throws {
        let pipe = try Syscall.pipe()
        defer {
            Syscall.close(pipe.read)
            Syscall.close(pipe.write)
        }
        var batch = HandoffBatch()
        let users = (0..<5).map { "user-\($0)" }
        for user in users { #expect(batch.append(descriptor: pipe.read, payload: try Self.payload(user))) }
        let bytes = try Self.sentBytes(batch)
        #expect(HandoffBatch.isBatch(bytes))
        #expect(try HandoffBatch.handoffs(in: bytes).map { try Handoff(decoding: $0).userID } == users)

        // Reused: a batch of one is that hand-off alone, the layout every release reads.
        batch.removeAll()
        #expect(batch.isEmpty)
        #expect(batch.append(descriptor: pipe.read, payload: try Self.payload("alone")))
        let single = try Self.sentBytes(batch)
        #expect(!HandoffBatch.isBatch(single))
        #expect(single == (try Self.payload("alone")))
        #expect(try HandoffBatch.handoffs(in: single).map(Array.init) == [single])
    }

    @Test func aBatchStopsAtItsCountAndItsBytes() throws {
        var batch = HandoffBatch()
        for index in 0..<HandoffBatch.maximumCount { #expect(batch.append(descriptor: 0, payload: try Self.payload("u\(index)"))) }
        #expect(!batch.append(descriptor: 0, payload: try Self.payload("one-too-many")))
        #expect(batch.count == HandoffBatch.maximumCount)

        // Hand-offs at their bounds (two 4 KiB header values each): the message's 64 KiB fill before 16 do.
        let large = try Handoff(
            route: .stream, userID: String(repeating: "u", count: Handoff.maximumUserIDBytes), tokenExpiry: nil,
            lastEventID: String(repeating: "e", count: Handoff.maximumHeaderValueBytes),
            origin: String(repeating: "o", count: Handoff.maximumHeaderValueBytes)
        ).encoded()
        var full = HandoffBatch()
        while full.append(descriptor: 0, payload: large) {}
        #expect(full.count == (DescriptorPassing.maximumPayload - 2) / (large.count + 2))
    }

    @Test func whatIsNotABatchIsRefused() throws {
        let entry = try Self.payload("a")
        let length = [UInt8(entry.count >> 8), UInt8(entry.count & 0xff)]
        let two = [HandoffBatch.marker, 2] + length + entry + length + entry
        #expect(try HandoffBatch.entries(of: two).count == 2)
        let refused: [(String, [UInt8])] = [
            ("empty", []),
            ("another marker", [0x03, 2] + two.dropFirst(2)),
            ("a batch of one", [HandoffBatch.marker, 1] + length + entry),
            ("more than a message carries", [HandoffBatch.marker, UInt8(HandoffBatch.maximumCount + 1)] + two.dropFirst(2)),
            ("cut short", Array(two.dropLast())),
            ("a length cut short", [HandoffBatch.marker, 2] + length + entry + [length[0]]),
            ("bytes after", two + [0]),
        ]
        for (name, bytes) in refused {
            #expect(throws: ControlProtocolError.self, "\(name)") { try HandoffBatch.entries(of: bytes) }
        }
    }
}
