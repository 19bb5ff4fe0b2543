import Shared
import SystemPackage

/// The supervisor's end of the link that carries connections to one worker: a `SOCK_SEQPACKET` socket for the
/// descriptors (`SCM_RIGHTS`) and a doorbell pipe whose byte wakes the worker's event loop to take them.
///
/// Why a doorbell: SwiftNIO cannot watch a socket it does not read, and it has no way to receive descriptors, so
/// a worker would need a thread blocked in `recvmsg` that then wakes the event loop: two wake-ups per connection.
/// With the doorbell the event loop itself is woken, once, and drains the socket with non-blocking `recvmsg`.
///
/// A class that closes both descriptors when the last holder lets go: the control plane (while the worker runs),
/// the accept thread (while a hand-off table that lists it is current), and a reload's `MigrationForwarder` (the
/// retiring worker's link and its successor's, while streams move). So a descriptor is never closed, and its number
/// reused, while another holder still uses it. The worker takes the doorbell's end as its signal to stop, which
/// therefore comes only once no holder needs it.
final class HandoffLink: Sendable {
    let socket: CInt
    let doorbell: CInt

    /// The worker's ends of a new link, to be placed at `WorkerLaunch`'s descriptor numbers and then closed.
    struct WorkerEnds {
        let socket: CInt
        let doorbell: CInt

        func close() {
            Syscall.close(socket)
            Syscall.close(doorbell)
        }
    }

    /// Takes over descriptors a link already has (an in-place upgrade carries them into the new program).
    init(socket: CInt, doorbell: CInt) {
        self.socket = socket
        self.doorbell = doorbell
    }

    deinit {
        Syscall.close(doorbell)
        Syscall.close(socket)
    }

    /// A new link: ours, and the worker's ends.
    static func make() throws(Errno) -> (ours: HandoffLink, theirs: WorkerEnds) {
        let (socketOurs, socketTheirs) = try Syscall.socketPair(type: .seqpacket)
        let doorbell: (read: CInt, write: CInt)
        do {
            doorbell = try Syscall.pipe()
        } catch {
            [socketOurs, socketTheirs].forEach(Syscall.close)
            throw error
        }
        let ours = HandoffLink(socket: socketOurs, doorbell: doorbell.write)
        let theirs = WorkerEnds(socket: socketTheirs, doorbell: doorbell.read)
        do {
            try Syscall.setNonBlocking(socketOurs, true)
            try Syscall.setNonBlocking(doorbell.write, true)
        } catch {
            theirs.close()
            throw error
        }
        return (ours, theirs)
    }

    /// Sends `descriptor` with `payload`, then rings. Throws `Errno.wouldBlock` when the worker's queue is full.
    func send(descriptor: CInt, payload: [UInt8]) throws(Errno) {
        try sendWithoutRinging(descriptor: descriptor, payload: payload)
        ring()
    }

    /// Sends `descriptor` with `payload` and leaves the worker asleep: the sender owes it a `ring()`.
    func sendWithoutRinging(descriptor: CInt, payload: [UInt8]) throws(Errno) {
        try DescriptorPassing.send(descriptor: descriptor, payload: payload, over: socket)
    }

    /// Sends a batch of connections in one message and leaves the worker asleep: the sender owes it a `ring()`
    /// before it waits for anything (the accept thread rings once per turn, so a burst of connects costs one wake-up).
    func sendWithoutRinging(_ batch: HandoffBatch) throws(Errno) {
        try batch.send(over: socket)
    }

    /// Wakes the worker to drain everything queued. A full doorbell is no loss: the worker has a ring to read
    /// still, and drains everything queued when it does; EPIPE means the worker is gone, which its exit tells the
    /// control plane.
    func ring() {
        _ = try? Syscall.writeByte(doorbell)
    }
}
