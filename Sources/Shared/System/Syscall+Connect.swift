#if canImport(Glibc)
import Glibc
#endif
import CLinux
import SystemPackage

/// The client side of a TCP connection, for tools that open many at once (sse-bench's load processes) and must
/// cost the kernel's work and little more.
extension Syscall {
    /// `inet_pton(AF_INET)`: `address` (dotted quad) and `port` as a `sockaddr_in`; nil when it is not an IPv4 address.
    public static func ipv4Address(_ address: String, port: Int) -> sockaddr_in? {
        var socketAddress = sockaddr_in()
        socketAddress.sin_family = sa_family_t(AF_INET)
        socketAddress.sin_port = in_port_t(UInt16(truncatingIfNeeded: port)).bigEndian
        guard inet_pton(AF_INET, address, &socketAddress.sin_addr) == 1 else { return nil }
        return socketAddress
    }

    /// `socket(2)` (non-blocking, close-on-exec), `bind(2)` to `source` with `IP_BIND_ADDRESS_NO_PORT`, and a
    /// non-blocking `connect(2)` to `server`. The connection is usually still being set up when this returns: the
    /// descriptor turns writable once it is (or readable with an error, once it failed).
    ///
    /// `IP_BIND_ADDRESS_NO_PORT` leaves the port to `connect`, which picks it for the whole 4-tuple: `bind`'s own
    /// search for a free port costs more than the rest of the set-up once tens of thousands are taken.
    public static func connectNonBlocking(to server: sockaddr_in, from source: sockaddr_in?) throws(Errno) -> CInt {
        let fd = try retryingEINTR("socket") {
            socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        }
        do throws(Errno) {
            if var source {
                var on: CInt = 1
                _ = try retryingEINTR("setsockopt") {
                    setsockopt(fd, CInt(IPPROTO_IP), IP_BIND_ADDRESS_NO_PORT, &on, socklen_t(MemoryLayout<CInt>.size))
                }
                _ = try retryingEINTR("bind") {
                    withUnsafePointer(to: &source) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                    }
                }
            }
            var server = server
            let result = withUnsafePointer(to: &server) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            // EINTR on a non-blocking connect leaves it in progress, like EINPROGRESS: retrying would fail with EALREADY.
            if result == -1, errno != EINPROGRESS, errno != EINTR { throw Errno(rawValue: errno) }
            return fd
        } catch {
            close(fd)
            throw error
        }
    }

    /// `send(2)` with `MSG_DONTWAIT | MSG_NOSIGNAL`: the bytes the socket took; nil when its buffer is full.
    public static func send(_ fd: CInt, _ bytes: UnsafeRawBufferPointer) throws(Errno) -> Int? {
        do {
            return try retryingEINTR("send") {
                Glibc.send(fd, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
            }
        } catch where error == .wouldBlock {
            return nil
        }
    }
}
