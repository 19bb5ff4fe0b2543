#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CLinux
import SystemPackage

/// The raw system calls sse-hub makes outside SwiftNIO, each wrapped once.
///
/// Conventions (after swift-system and NIOPosix's `System.swift`): `EINTR` is retried,
/// operational failures throw `Errno`, and errors that can only mean a bug in this
/// program (`EBADF`, `EFAULT`, `EINVAL` on arguments we built) trap.
public enum Syscall {
    /// Runs `body` until it stops failing with `EINTR`; -1 becomes a thrown `Errno`.
    @inline(__always)
    static func retryingEINTR<T: FixedWidthInteger>(
        _ function: StaticString, _ body: () -> T
    ) throws(Errno) -> T {
        while true {
            let result = body()
            guard result == -1 else { return result }
            let code = errno
            switch code {
            case EINTR:
                continue
            case EBADF, EFAULT:
                preconditionFailure("\(function) failed with errno \(code): a programmer error")
            default:
                throw Errno(rawValue: code)
            }
        }
    }

    /// `close(2)`. Never retried: Linux releases the descriptor even when it reports `EINTR`.
    public static func close(_ fd: CInt) {
        if Glibc.close(fd) == -1, errno == EBADF {
            preconditionFailure("close(\(fd)) failed with EBADF: a descriptor was closed twice")
        }
    }

    /// `accept4(2)` with `SOCK_NONBLOCK | SOCK_CLOEXEC`; nil when no connection is waiting. With `peer`, the
    /// client's address is written there (otherwise the kernel is not asked for it).
    public static func accept(_ listener: CInt, peer: UnsafeMutablePointer<sockaddr_storage>? = nil) throws(Errno) -> CInt? {
        let flags = Int32(SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue)
        do {
            return try retryingEINTR("accept4") {
                guard let peer else { return accept4(listener, nil, nil, flags) }
                var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
                return peer.withMemoryRebound(to: sockaddr.self, capacity: 1) { accept4(listener, $0, &length, flags) }
            }
        } catch where error == Errno.wouldBlock {
            return nil
        }
    }

    /// `recv(2)` with `MSG_PEEK | MSG_DONTWAIT`: copies what the socket holds without consuming it.
    /// Returns nil when nothing is there yet, 0 at end of stream.
    public static func peek(_ fd: CInt, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int? {
        try receive(fd, into: buffer, flags: MSG_PEEK | MSG_DONTWAIT)
    }

    /// `recv(2)` with `MSG_DONTWAIT`: consumes what the socket holds, up to the buffer's size.
    /// Returns nil when nothing is there yet, 0 at end of stream.
    public static func receive(_ fd: CInt, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int? {
        try receive(fd, into: buffer, flags: MSG_DONTWAIT)
    }

    private static func receive(_ fd: CInt, into buffer: UnsafeMutableRawBufferPointer, flags: Int) throws(Errno) -> Int? {
        do {
            return try retryingEINTR("recv") {
                recv(fd, buffer.baseAddress, buffer.count, Int32(flags))
            }
        } catch where error == .wouldBlock {
            return nil
        }
    }

    /// `socketpair(2)` in `AF_UNIX` with `SOCK_CLOEXEC`, so neither end leaks into spawned children by accident.
    public static func socketPair(type: SocketPairType) throws(Errno) -> (CInt, CInt) {
        var fds: [CInt] = [-1, -1]
        _ = try retryingEINTR("socketpair") {
            socketpair(AF_UNIX, type.rawValue | Int32(SOCK_CLOEXEC.rawValue), 0, &fds)
        }
        return (fds[0], fds[1])
    }

    public enum SocketPairType: Sendable {
        case stream, seqpacket
        var rawValue: CInt {
            switch self {
            case .stream: Int32(SOCK_STREAM.rawValue)
            case .seqpacket: Int32(SOCK_SEQPACKET.rawValue)
            }
        }
    }

    /// `pipe2(2)` with `O_CLOEXEC`: the read end, then the write end.
    public static func pipe() throws(Errno) -> (read: CInt, write: CInt) {
        var fds: [CInt] = [-1, -1]
        _ = try retryingEINTR("pipe2") { pipe2(&fds, O_CLOEXEC) }
        return (fds[0], fds[1])
    }

    /// `read(2)`: what `fd` holds, up to the buffer's size; 0 at end of file.
    public static func read(_ fd: CInt, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int {
        try retryingEINTR("read") { Glibc.read(fd, buffer.baseAddress, buffer.count) }
    }

    /// `write(2)` of a single byte to a non-blocking descriptor; false when it is full (`EAGAIN`).
    @discardableResult
    public static func writeByte(_ fd: CInt, _ byte: UInt8 = 1) throws(Errno) -> Bool {
        var byte = byte
        do {
            return try retryingEINTR("write") { Glibc.write(fd, &byte, 1) } == 1
        } catch where error == .wouldBlock {
            return false
        }
    }

    public enum Readiness: Sendable {
        case readable, writable
    }

    /// `poll(2)` on one descriptor: waits until it is `readiness` (or hung up, or failed: the read or write that
    /// follows reports what went wrong), at most `timeoutMilliseconds` (-1: no limit); false when the time ran out.
    public static func waitUntil(_ fd: CInt, is readiness: Readiness, timeoutMilliseconds: CInt) throws(Errno) -> Bool {
        var entry = pollfd(fd: fd, events: Int16(readiness == .readable ? POLLIN : POLLOUT), revents: 0)
        return try retryingEINTR("poll") { Glibc.poll(&entry, 1, timeoutMilliseconds) } > 0
    }

    /// `nanosleep(2)` for `duration`; a signal's interruption sleeps the rest.
    public static func sleep(for duration: Duration) {
        var request = timespec(tv_sec: Int(duration.components.seconds), tv_nsec: Int(duration.components.attoseconds / 1_000_000_000))
        var remaining = timespec()
        while nanosleep(&request, &remaining) == -1, errno == EINTR { request = remaining }
    }

    /// `fcntl(F_SETFL)`: sets or clears `O_NONBLOCK`.
    public static func setNonBlocking(_ fd: CInt, _ nonBlocking: Bool) throws(Errno) {
        let flags = try retryingEINTR("fcntl") { fcntl(fd, F_GETFL) }
        let wanted = nonBlocking ? flags | O_NONBLOCK : flags & ~O_NONBLOCK
        if wanted != flags {
            _ = try retryingEINTR("fcntl") { fcntl(fd, F_SETFL, wanted) }
        }
    }

    /// `fcntl(F_SETFD)`: sets or clears `FD_CLOEXEC`.
    public static func setCloseOnExec(_ fd: CInt, _ closeOnExec: Bool) throws(Errno) {
        let flags = try retryingEINTR("fcntl") { fcntl(fd, F_GETFD) }
        let wanted = closeOnExec ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC
        if wanted != flags {
            _ = try retryingEINTR("fcntl") { fcntl(fd, F_SETFD, wanted) }
        }
    }

    /// `dup(2)` with `F_DUPFD_CLOEXEC`.
    public static func duplicate(_ fd: CInt) throws(Errno) -> CInt {
        try retryingEINTR("fcntl") { fcntl(fd, F_DUPFD_CLOEXEC, 0) }
    }


    /// `kill(2)`.
    public static func kill(_ pid: pid_t, _ signal: CInt) throws(Errno) {
        _ = try retryingEINTR("kill") { Glibc.kill(pid, signal) }
    }

    /// `waitpid(2)` with `WNOHANG`: the raw wait status if the child `pid` has exited (it is reaped), nil while
    /// it runs. `ECHILD` (not our child, or reaped already) is thrown.
    public static func reapIfExited(_ pid: pid_t) throws(Errno) -> CInt? {
        var status: CInt = 0
        let reaped = try retryingEINTR("waitpid") { waitpid(pid, &status, WNOHANG) }
        return reaped == pid ? status : nil
    }

    /// `sigaction(SIGCHLD)`: from now on every SIGCHLD writes a byte to `pipeWriteEnd` (non-blocking, the write end
    /// of a pipe whose read end the caller watches). For one pipe per process: the handler has one slot.
    public static func signalChildExits(to pipeWriteEnd: CInt) throws(Errno) {
        _ = try retryingEINTR("sigaction") { clinux_install_child_exit_pipe(pipeWriteEnd) }
    }

    /// `getpeername(2)`: the address of a connected socket's peer.
    public static func peerAddress(_ fd: CInt) throws(Errno) -> sockaddr_storage {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = try retryingEINTR("getpeername") {
            withUnsafeMutablePointer(to: &storage) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) }
            }
        }
        return storage
    }

    /// `signal(SIGPIPE, SIG_IGN)`: a peer that hangs up must cost an `EPIPE`, not the process.
    public static func ignoreSIGPIPE() {
        _ = signal(SIGPIPE, SIG_IGN)
    }

    /// `prctl(PR_SET_PDEATHSIG)`: the kernel sends `signal` to this process when its parent exits.
    public static func setParentDeathSignal(_ signal: CInt) throws(Errno) {
        _ = try retryingEINTR("prctl") { clinux_set_parent_death_signal(signal) }
    }

    /// `prctl(PR_SET_NAME)`: names the calling thread (at most 15 bytes) for `top -H`, `ps -L` and profilers.
    public static func nameThisThread(_ name: String) {
        _ = clinux_set_thread_name(name)
    }

    /// `malloc_trim(3)`: hands freed heap memory back to the kernel. glibc otherwise keeps it, so a
    /// worker's resident size would stay at its high-water mark after a burst of connection set-ups.
    public static func releaseFreeMemory() {
        _ = malloc_trim(0)
    }

    /// `getpid(2)`.
    public static var processID: pid_t { getpid() }
}
