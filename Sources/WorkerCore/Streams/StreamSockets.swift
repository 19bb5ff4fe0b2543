import Logging
import NIOCore
import Shared
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Every live stream's socket in a worker (`StreamSocket`), and the one epoll that watches them: the client leaving,
/// or sending (dropped unread), or a socket with bytes waiting that takes them again. Owns each descriptor from
/// adoption to close. On the worker's event loop; `StreamReadinessWatcher` tells the loop when the epoll has
/// something (`processReadiness`), since SwiftNIO cannot watch a descriptor it does not read itself.
final class StreamSockets {
    let eventLoop: any EventLoop
    /// A stream's `--max-pending-bytes`: more unsent, and its client counts as a slow consumer and is dropped.
    let maximumPendingBytes: Int
    let epoll: Epoll
    /// A socket that closed, once per socket, on a turn of the event loop of its own: a close found while the hub
    /// walks its streams (a write failing) must not change them under it.
    var onClosed: ((StreamSocket) -> Void)?
    /// A socket whose client stopped reading, just before it is closed.
    var onSlowConsumer: ((StreamSocket) -> Void)?
    private let logger: Logger
    /// Open sockets by descriptor (below the open-files limit, so a flat table).
    private var byDescriptor: ContiguousArray<StreamSocket?> = []
    private var closedUnannounced: [StreamSocket] = []
    private var announcing = false
    /// Callers waiting for a socket's unsent bytes to leave (a reload passing it on).
    private var waitingUntilSent: [ObjectIdentifier: (Bool) -> Void] = [:]
    /// A gathered write's list of buffers, made once.
    private let vectors = UnsafeMutableBufferPointer<iovec>.allocate(capacity: 64)
    private let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 8)

    init(eventLoop: any EventLoop, maximumPendingBytes: Int, logger: Logger) throws(Errno) {
        self.eventLoop = eventLoop
        self.maximumPendingBytes = maximumPendingBytes
        self.logger = logger
        epoll = try Epoll()
    }

    deinit {
        for case let socket? in byDescriptor { Syscall.close(socket.descriptor) }
        vectors.deallocate()
        scratch.deallocate()
    }

    /// Open sockets.
    private(set) var count = 0

    /// Takes `fd` (a connected, non-blocking TCP socket: the supervisor accepts with `SOCK_NONBLOCK`, a flag of the
    /// connection the descriptor carries with it) as a stream's socket. On failure `fd` is closed.
    func adopt(_ fd: CInt, userID: String, address: ClientAddressKey?) throws(Errno) -> StreamSocket {
        eventLoop.preconditionInEventLoop()
        // A socket that is not TCP (a test's socketpair) has no Nagle to turn off.
        try? Syscall.disableNagle(fd)
        do {
            try epoll.add(fd, events: Self.watched, token: UInt64(fd))
        } catch {
            Syscall.close(fd)
            throw error
        }
        let socket = StreamSocket(descriptor: fd, userID: userID, address: address, sockets: self)
        let index = Int(fd)
        if index >= byDescriptor.count { byDescriptor.append(contentsOf: repeatElement(nil, count: max(index + 1, byDescriptor.count * 2) - byDescriptor.count)) }
        byDescriptor[index] = socket
        count += 1
        return socket
    }

    private static let watched: Epoll.Events = [.readable, .peerClosed]

    /// Handles what the epoll reports now. Level-triggered: whatever stays ready is reported by the next call.
    func processReadiness() {
        eventLoop.preconditionInEventLoop()
        let ready: [Epoll.Ready]
        do {
            ready = try epoll.wait(timeoutMilliseconds: 0)
        } catch {
            return logger.error("cannot read the streams' readiness", metadata: ["error": "\(error)"])
        }
        for entry in ready {
            let index = Int(entry.token)
            // Closed by a report earlier in this list: nothing to do (only adoption reuses a descriptor, not this loop).
            guard index < byDescriptor.count, let socket = byDescriptor[index] else { continue }
            socket.readinessReported(entry.events)
        }
        announceClosed()
    }

    /// Calls `body` once `socket`'s unsent bytes have left (true), or it closed first (false).
    func whenSent(_ socket: StreamSocket, _ body: @escaping (Bool) -> Void) {
        switch socket.state {
        case .closed: body(false)
        case .open where socket.unsentBytes == 0: body(true)
        case .open, .endingWhenSent: waitingUntilSent[ObjectIdentifier(socket)] = body
        }
    }

    // MARK: For StreamSocket

    /// One gathered write of the buffers' readable bytes (at most 64 of them): what the kernel took; nil when it took nothing.
    func send(_ buffers: [ByteBuffer], to fd: CInt) throws(Errno) -> Int? {
        let count = min(buffers.count, vectors.count)
        for index in 0..<count {
            // The pointer outlives the closure, as SwiftNIO's own gathered writes do it: `buffers` holds each storage
            // until the call returns, and nothing writes to them meanwhile.
            buffers[index].withUnsafeReadableBytes { bytes in
                vectors[index] = iovec(iov_base: UnsafeMutableRawPointer(mutating: bytes.baseAddress), iov_len: bytes.count)
            }
        }
        return try Syscall.send(fd, gathering: UnsafeMutableBufferPointer(rebasing: vectors[0..<count]))
    }

    func watch(_ socket: StreamSocket, writable: Bool) {
        do {
            try epoll.modify(socket.descriptor, events: writable ? Self.watched.union(.writable) : Self.watched, token: UInt64(socket.descriptor))
        } catch {
            // Unreachable for a registered socket; without the registration it could never be written to again.
            logger.error("cannot watch a stream's socket; closing it", metadata: ["user": "\(socket.userID)", "error": "\(error)"])
            socket.close()
        }
    }

    /// Reads and drops what the client sent; false when it has gone (end of stream or an error).
    func discardInput(of socket: StreamSocket) -> Bool {
        // Bounded per report: a client that keeps sending is served again on the next one.
        for _ in 0..<16 {
            do {
                guard let read = try Syscall.receive(socket.descriptor, into: scratch) else { return true }
                if read == 0 { return false }
            } catch {
                return false
            }
        }
        return true
    }

    func slowConsumer(_ socket: StreamSocket) {
        onSlowConsumer?(socket)
        socket.close()
    }

    func sentEverything(_ socket: StreamSocket) {
        guard !waitingUntilSent.isEmpty, let waiting = waitingUntilSent.removeValue(forKey: ObjectIdentifier(socket)) else { return }
        waiting(true)
    }

    func closed(_ socket: StreamSocket) {
        // Removed first: a descriptor passed on to another worker shares the connection, and with it this registration.
        epoll.remove(socket.descriptor)
        Syscall.close(socket.descriptor)
        byDescriptor[Int(socket.descriptor)] = nil
        count -= 1
        if !waitingUntilSent.isEmpty, let waiting = waitingUntilSent.removeValue(forKey: ObjectIdentifier(socket)) { waiting(false) }
        closedUnannounced.append(socket)
        guard !announcing else { return }
        announcing = true
        eventLoop.assumeIsolated().execute { [self] in announceClosed() }
    }

    private func announceClosed() {
        announcing = false
        guard !closedUnannounced.isEmpty else { return }
        let closed = closedUnannounced
        closedUnannounced = []
        for socket in closed { onClosed?(socket) }
    }
}
