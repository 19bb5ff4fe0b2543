#if canImport(Glibc)
import Glibc
#endif
import CLinux
import SystemPackage

/// What a worker needs to serve a stream's socket without SwiftNIO: gathered writes and the one socket option.
extension Syscall {
    /// `sendmsg(2)` of `buffers` in order (one gathered write) with `MSG_DONTWAIT | MSG_NOSIGNAL`: the bytes the
    /// socket took, maybe fewer than offered; nil when its buffer is full. At most `IOV_MAX` (1024) buffers a call.
    public static func send(_ fd: CInt, gathering buffers: UnsafeMutableBufferPointer<iovec>) throws(Errno) -> Int? {
        precondition(buffers.count <= 1024, "more buffers than one sendmsg takes (IOV_MAX)")
        var message = msghdr()
        message.msg_iov = buffers.baseAddress
        message.msg_iovlen = buffers.count
        do {
            return try retryingEINTR("sendmsg") { sendmsg(fd, &message, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
        } catch where error == .wouldBlock {
            return nil
        }
    }

    /// `setsockopt(TCP_NODELAY)`: every frame leaves when written, not when the previous one is acknowledged (Nagle's
    /// wait behind a delayed ACK would add up to 40 ms to an event). Fails with `EOPNOTSUPP` on a socket that is not TCP.
    public static func disableNagle(_ fd: CInt) throws(Errno) {
        var on: CInt = 1
        _ = try retryingEINTR("setsockopt") {
            setsockopt(fd, CInt(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<CInt>.size))
        }
    }
}

extension Syscall {
    /// `poll(2)` on two descriptors until either is readable (or hung up, or failed), with no time limit: which are.
    public static func waitUntilReadable(_ first: CInt, or second: CInt) throws(Errno) -> (first: Bool, second: Bool) {
        var entries = [pollfd(fd: first, events: Int16(POLLIN), revents: 0), pollfd(fd: second, events: Int16(POLLIN), revents: 0)]
        _ = try retryingEINTR("poll") { Glibc.poll(&entries, 2, -1) }
        return (entries[0].revents != 0, entries[1].revents != 0)
    }
}
