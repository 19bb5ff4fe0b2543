#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import SystemPackage

/// Listening TCP sockets the supervisor binds itself when systemd passed none.
public enum ListeningSocket {
    /// `socket(2)`, `setsockopt(SO_REUSEADDR, TCP_DEFER_ACCEPT)`, `bind(2)` and `listen(2)` on `address`;
    /// the socket is non-blocking and close-on-exec. With `TCP_DEFER_ACCEPT` a connection is accepted only once
    /// its first bytes arrived (or after 10 s), so the supervisor finds the request head there at accept instead
    /// of watching the connection for it: fewer syscalls and wake-ups per connection (`DeferAcceptSec=` in the
    /// socket unit does the same for systemd's sockets).
    public static func bind(_ address: SocketAddress, backlog: CInt = 4096) throws -> CInt {
        let family: CInt
        switch address {
        case .v4: family = AF_INET
        case .v6: family = AF_INET6
        case .unixDomainSocket: family = AF_UNIX
        }
        let fd = try Syscall.retryingEINTR("socket") {
            socket(family, Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        }
        do {
            if family != AF_UNIX {
                var one: CInt = 1
                _ = try Syscall.retryingEINTR("setsockopt") {
                    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<CInt>.size))
                }
                var seconds: CInt = 10
                _ = try Syscall.retryingEINTR("setsockopt") {
                    setsockopt(fd, Int32(IPPROTO_TCP), TCP_DEFER_ACCEPT, &seconds, socklen_t(MemoryLayout<CInt>.size))
                }
            }
            _ = try address.withSockAddr { pointer, length in
                try Syscall.retryingEINTR("bind") { Glibc.bind(fd, pointer, socklen_t(length)) }
            }
            _ = try Syscall.retryingEINTR("listen") { listen(fd, backlog) }
            return fd
        } catch {
            Syscall.close(fd)
            throw error
        }
    }

    /// A listening `AF_UNIX` socket at `path` (a stale socket file there is replaced), with `mode` set by
    /// `chmod(2)`: access to a control socket is decided by the file system.
    public static func bindUnix(path: String, mode: mode_t) throws -> CInt {
        _ = unlink(path)
        let fd = try bind(try SocketAddress(unixDomainSocketPath: path))
        guard chmod(path, mode) == 0 else {
            let code = errno
            Syscall.close(fd)
            throw Errno(rawValue: code)
        }
        return fd
    }

    /// `getsockname(2)`: the address a listening socket is bound to (to learn an ephemeral port).
    public static func localAddress(of fd: CInt) throws -> SocketAddress {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = try withUnsafeMutablePointer(to: &storage) { pointer throws(Errno) -> CInt in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address throws(Errno) -> CInt in
                try Syscall.retryingEINTR("getsockname") { getsockname(fd, address, &length) }
            }
        }
        switch CInt(storage.ss_family) {
        case AF_INET:
            return withUnsafeBytes(of: storage) { SocketAddress($0.load(as: sockaddr_in.self)) }
        case AF_INET6:
            return withUnsafeBytes(of: storage) { SocketAddress($0.load(as: sockaddr_in6.self)) }
        default:
            return withUnsafeBytes(of: storage) { SocketAddress($0.load(as: sockaddr_un.self)) }
        }
    }
}
