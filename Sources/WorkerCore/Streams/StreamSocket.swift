import NIOCore
import Shared

/// One live stream's connection, served without a SwiftNIO channel.
///
/// A worker only ever writes to a stream: the supervisor read its request, and whatever the client sends later is
/// dropped. So a stream needs no pipeline, no HTTP parser and no read buffer: its socket, the frames the kernel has
/// not taken yet, and a registration on its `StreamSockets`'s epoll, which reports the client leaving or the socket
/// taking bytes again. Adopting one costs a `setsockopt` and an `epoll_ctl` where a SwiftNIO channel cost ten system
/// calls and a pipeline's allocations, and an idle one holds about a tenth of the memory. On the worker's event
/// loop, like the hub that holds it.
final class StreamSocket {
    let descriptor: CInt
    let userID: String
    /// Counted against this address (`--max-worker-conns-per-ip`) until it closes.
    let address: ClientAddressKey?
    /// Its owner outlives it: it holds every open socket in its table.
    private unowned let sockets: StreamSockets
    /// Frames written and not yet taken by the kernel, oldest first (the first maybe partly sent). Empty, and
    /// unallocated, on an idle stream.
    private var unsent: [ByteBuffer] = []
    /// What `unsent` holds: past `--max-pending-bytes` the client has stopped reading.
    private(set) var unsentBytes = 0
    private(set) var state = State.open
    /// Registered for `EPOLLOUT`: only while bytes wait, or a level-triggered epoll would report it without end.
    private var watchingWritable = false

    enum State {
        case open
        /// Ending: its last chunk is written; it closes once the kernel has taken everything.
        case endingWhenSent
        case closed
    }

    init(descriptor: CInt, userID: String, address: ClientAddressKey?, sockets: StreamSockets) {
        self.descriptor = descriptor
        self.userID = userID
        self.address = address
        self.sockets = sockets
    }

    var isOpen: Bool { state == .open }

    /// Queues `frame` (nothing is sent until `flush`).
    func write(_ frame: ByteBuffer) {
        guard state == .open, frame.readableBytes > 0 else { return }
        unsent.append(frame)
        unsentBytes += frame.readableBytes
    }

    /// Sends what `write` queued, as much as the socket takes now; the rest when it is writable again.
    func flush() {
        guard state != .closed, !unsent.isEmpty else { return }
        sendUnsent()
    }

    func writeAndFlush(_ frame: ByteBuffer) {
        write(frame)
        flush()
    }

    /// Ends the chunked body and closes the connection once the kernel has taken every byte before it.
    func end() {
        guard state == .open else { return }
        write(SSEWireFormat.lastChunk)
        state = .endingWhenSent
        sendUnsent()
    }

    /// Closes now, whatever is still unsent. The HTTP body is not ended: a stream passed on to another worker lives on.
    func close() {
        guard state != .closed else { return }
        state = .closed
        unsent = []
        unsentBytes = 0
        sockets.closed(self)
    }

    /// Calls `body` once the unsent bytes have left (true), or the socket closed first (false); at once when nothing waits.
    func whenSent(_ body: @escaping (Bool) -> Void) {
        sockets.whenSent(self, body)
    }

    /// The epoll reported this socket.
    func readinessReported(_ events: Epoll.Events) {
        if events.contains(.writable), state != .closed { sendUnsent() }
        if !events.isDisjoint(with: [.readable, .peerClosed, .hangUp, .error]), state != .closed {
            if !sockets.discardInput(of: self) { close() }
        }
    }

    private func sendUnsent() {
        while !unsent.isEmpty {
            let sent: Int?
            do {
                sent = try sockets.send(unsent, to: descriptor)
            } catch {
                // EPIPE, ECONNRESET: the client is gone.
                return close()
            }
            guard let sent else { break }
            consume(sent)
        }
        guard unsent.isEmpty else {
            if !watchingWritable {
                watchingWritable = true
                sockets.watch(self, writable: true)
            }
            if unsentBytes > sockets.maximumPendingBytes { sockets.slowConsumer(self) }
            return
        }
        unsent = []  // the storage too: an idle stream holds none
        if watchingWritable {
            watchingWritable = false
            sockets.watch(self, writable: false)
        }
        if state == .endingWhenSent { return close() }
        sockets.sentEverything(self)
    }

    /// Drops the first `count` bytes of `unsent`, which the kernel took.
    private func consume(_ count: Int) {
        unsentBytes -= count
        var left = count
        var whole = 0
        while whole < unsent.count, unsent[whole].readableBytes <= left {
            left -= unsent[whole].readableBytes
            whole += 1
        }
        unsent.removeFirst(whole)
        if left > 0 { unsent[0].moveReaderIndex(forwardBy: left) }
    }
}
