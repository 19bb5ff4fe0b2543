import Shared
import SystemPackage

/// The supervisor's end of the link that carries connections to one worker: a `SOCK_SEQPACKET` socket for the
/// descriptors (`SCM_RIGHTS`) and a doorbell pipe whose byte wakes the worker's event loop to take them.
///
/// Why a doorbell: SwiftNIO cannot watch a socket it does not read, and it has no way to receive descriptors, so
/// a worker would need a thread blocked in `recvmsg` that then wakes the event loop: two wake-ups per connection.
/// With the doorbell the event loop itself is woken, once, and drains the socket with non-blocking `recvmsg`.
struct HandoffLink: Sendable {
    let socket: CInt
    let doorbell: CInt

    /// Descriptor numbers a worker finds its ends at.
    static let workerSocketDescriptor: CInt = 4
    static let workerDoorbellDescriptor: CInt = 5

    /// A new link: ours, and the worker's ends (for `posix_spawn`, then closed here).
    static func make() throws(Errno) -> (ours: HandoffLink, theirs: (socket: CInt, doorbell: CInt)) {
        let (socketOurs, socketTheirs) = try Syscall.socketPair(type: .seqpacket)
        let doorbell: (read: CInt, write: CInt)
        do {
            doorbell = try Syscall.pipe()
        } catch {
            [socketOurs, socketTheirs].forEach(Syscall.close)
            throw error
        }
        do {
            try Syscall.setNonBlocking(socketOurs, true)
            try Syscall.setNonBlocking(doorbell.write, true)
        } catch {
            [socketOurs, socketTheirs, doorbell.read, doorbell.write].forEach(Syscall.close)
            throw error
        }
        return (HandoffLink(socket: socketOurs, doorbell: doorbell.write), (socketTheirs, doorbell.read))
    }

    /// Sends `descriptor` with `payload`, then rings. Throws `Errno.wouldBlock` when the worker's queue is full.
    /// A full doorbell is no loss: the worker has a ring to read still, and drains everything queued when it does.
    func send(descriptor: CInt, payload: [UInt8]) throws(Errno) {
        try DescriptorPassing.send(descriptor: descriptor, payload: payload, over: socket)
        _ = try? Syscall.writeByte(doorbell)
    }

    /// Closing the doorbell tells the worker no more connections come (it drains what is queued and stops).
    func close() {
        Syscall.close(doorbell)
        Syscall.close(socket)
    }
}
