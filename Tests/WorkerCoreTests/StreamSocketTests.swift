import NIOCore
import NIOEmbedded
import Shared
import Testing
@testable import WorkerCore

/// A stream's socket without SwiftNIO, on real socket pairs: what the kernel cannot take now leaves when it can, a
/// client that stops reading is dropped past `--max-pending-bytes`, and a client leaving is announced once.
@Suite struct StreamSocketTests {
    let loop = EmbeddedEventLoop()

    /// Frames of `size` bytes, each byte the frame's number, so a client can tell order and completeness.
    static func frame(_ number: Int, size: Int) -> ByteBuffer {
        ByteBuffer(repeating: UInt8(truncatingIfNeeded: number), count: size)
    }

    @Test func bytesTheSocketCouldNotTakeLeaveInOrderOnceItCan() throws {
        let sockets = try embeddedSockets(on: loop, maximumPendingBytes: 64 << 20)
        let (socket, client) = try StreamClient.connected(to: sockets, as: "alice")
        let (frames, size) = (64, 64 * 1024)  // 4 MiB: far more than a socket pair's buffers hold
        for number in 0..<frames { socket.writeAndFlush(Self.frame(number, size: size)) }
        #expect(socket.unsentBytes > 0, "the socket took only part of it")
        var received = ByteBuffer()
        for _ in 0..<10_000 where received.readableBytes < frames * size {
            var part = try client.read().bytes
            received.writeBuffer(&part)
            sockets.processReadiness()  // writable again: the rest goes
        }
        #expect(received.readableBytes == frames * size && socket.unsentBytes == 0)
        let ordered = (0..<frames).allSatisfy { number in
            received.getBytes(at: number * size, length: size)?.allSatisfy { $0 == UInt8(number) } ?? false
        }
        #expect(ordered, "every byte once, in the order written")
    }

    @Test func aClientThatStopsReadingIsDroppedPastTheLimit() throws {
        let sockets = try embeddedSockets(on: loop, maximumPendingBytes: 256 * 1024)
        var dropped: [String] = []
        var closed: [String] = []
        sockets.onSlowConsumer = { dropped.append($0.userID) }
        sockets.onClosed = { closed.append($0.userID) }
        let (socket, client) = try StreamClient.connected(to: sockets, as: "alice")
        var written = 0
        while socket.isOpen, written < 64 {
            socket.writeAndFlush(Self.frame(written, size: 64 * 1024))
            written += 1
        }
        #expect(dropped == ["alice"] && socket.state == .closed && sockets.count == 0)
        #expect(closed.isEmpty, "announced on a turn of the event loop of its own")
        loop.run()
        #expect(closed == ["alice"])
        var end = try client.read()
        while !end.closed { end = try client.read() }
        #expect(end.closed, "the client sees its connection end")
    }

    @Test func aClientThatLeavesIsAnnouncedOnceAndItsSocketClosed() throws {
        let sockets = try embeddedSockets(on: loop)
        var closed: [String] = []
        sockets.onClosed = { closed.append($0.userID) }
        let (socket, client) = try StreamClient.connected(to: sockets, as: "alice")
        let (stays, stayingClient) = try StreamClient.connected(to: sockets, as: "bob")
        client.leave()
        sockets.processReadiness()
        loop.run()
        sockets.processReadiness()
        loop.run()
        #expect(closed == ["alice"] && socket.state == .closed && stays.isOpen && sockets.count == 1)
        stays.writeAndFlush(ByteBuffer(string: "still here"))
        #expect(String(buffer: try stayingClient.read().bytes) == "still here")
    }

    @Test func anEndedStreamSendsItsLastChunkThenCloses() throws {
        let sockets = try embeddedSockets(on: loop)
        let (socket, client) = try StreamClient.connected(to: sockets, as: "alice")
        socket.write(ByteBuffer(string: "bye"))
        socket.end()
        let received = try client.read()
        #expect(String(buffer: received.bytes) == "bye" + String(buffer: SSEWireFormat.lastChunk) && received.closed)
        #expect(socket.state == .closed)
    }

    /// A reload waits for a stream's unsent bytes before passing its descriptor on.
    @Test func whenSentWaitsForTheUnsentBytes() throws {
        let sockets = try embeddedSockets(on: loop, maximumPendingBytes: 64 << 20)
        let (socket, client) = try StreamClient.connected(to: sockets, as: "alice")
        var idle: Bool?
        socket.whenSent { idle = $0 }
        #expect(idle == true, "nothing waits: at once")
        for number in 0..<32 { socket.writeAndFlush(Self.frame(number, size: 64 * 1024)) }
        var sent: Bool?
        socket.whenSent { sent = $0 }
        #expect(sent == nil)
        for _ in 0..<10_000 where sent == nil {
            _ = try client.read()
            sockets.processReadiness()
        }
        #expect(sent == true && socket.isOpen)
    }
}
