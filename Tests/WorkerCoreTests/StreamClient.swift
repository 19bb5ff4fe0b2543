import NIOCore
import Logging
import NIOEmbedded
import Shared
@testable import WorkerCore

/// A stream's client for tests without a network: one end of a real socket pair, whose other end a `StreamSockets`
/// adopted as the stream's socket, as `HandoffReceiver` adopts a handed-over TCP connection.
final class StreamClient {
    private var descriptor: CInt

    private init(descriptor: CInt) {
        self.descriptor = descriptor
    }

    deinit { leave() }

    /// A connected pair: the server's end adopted by `sockets` as `userID`'s stream, and its client.
    static func connected(to sockets: StreamSockets, as userID: String) throws -> (StreamSocket, StreamClient) {
        let (server, client) = try Syscall.socketPair(type: .stream)
        try Syscall.setNonBlocking(server, true)
        return (try sockets.adopt(server, userID: userID, address: nil), StreamClient(descriptor: client))
    }

    /// What the server has sent since the last read, and whether it has closed its end.
    func read() throws -> (bytes: ByteBuffer, closed: Bool) {
        var bytes = ByteBuffer()
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = try chunk.withUnsafeMutableBytes { try Syscall.receive(descriptor, into: $0) }
            guard let count else { return (bytes, false) }
            if count == 0 { return (bytes, true) }
            bytes.writeBytes(chunk[..<count])
        }
    }

    /// Leaves, as a browser closing its tab does.
    func leave() {
        guard descriptor >= 0 else { return }
        Syscall.close(descriptor)
        descriptor = -1
    }
}

/// A `StreamSockets` on a test's `EmbeddedEventLoop`.
func embeddedSockets(on loop: EmbeddedEventLoop, maximumPendingBytes: Int = 1 << 20) throws -> StreamSockets {
    try StreamSockets(eventLoop: loop, maximumPendingBytes: maximumPendingBytes, logger: Logger(label: "test"))
}
