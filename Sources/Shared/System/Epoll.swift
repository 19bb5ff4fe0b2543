#if canImport(Glibc)
import Glibc
#endif
import CLinux
import SystemPackage

/// An `epoll(7)` instance: the readiness source for the supervisor's accept-and-peek loop,
/// which must watch sockets without reading them (SwiftNIO would consume the bytes meant for a worker).
public final class Epoll {
    public let descriptor: CInt
    private var events = [epoll_event](repeating: epoll_event(), count: 256)

    /// `epoll_create1(EPOLL_CLOEXEC)`.
    public init() throws(Errno) {
        descriptor = try Syscall.retryingEINTR("epoll_create1") { epoll_create1(Int32(EPOLL_CLOEXEC)) }
    }

    deinit { Syscall.close(descriptor) }

    public struct Events: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let readable = Events(rawValue: EPOLLIN.rawValue)
        public static let writable = Events(rawValue: EPOLLOUT.rawValue)
        public static let peerClosed = Events(rawValue: EPOLLRDHUP.rawValue)
        public static let hangUp = Events(rawValue: EPOLLHUP.rawValue)
        public static let error = Events(rawValue: EPOLLERR.rawValue)
        /// Edge-triggered: reported once per arrival of new data, which is what a `MSG_PEEK` reader needs
        /// (level-triggered would report the unread bytes forever).
        public static let edgeTriggered = Events(rawValue: EPOLLET.rawValue)
    }

    /// `epoll_ctl(EPOLL_CTL_ADD)`, tagging the registration with `token`.
    public func add(_ fd: CInt, events: Events, token: UInt64) throws(Errno) {
        var event = epoll_event()
        event.events = events.rawValue
        event.data.u64 = token
        _ = try Syscall.retryingEINTR("epoll_ctl") { epoll_ctl(descriptor, EPOLL_CTL_ADD, fd, &event) }
    }

    /// `epoll_ctl(EPOLL_CTL_MOD)`: what a registered descriptor is watched for from now on.
    public func modify(_ fd: CInt, events: Events, token: UInt64) throws(Errno) {
        var event = epoll_event()
        event.events = events.rawValue
        event.data.u64 = token
        _ = try Syscall.retryingEINTR("epoll_ctl") { epoll_ctl(descriptor, EPOLL_CTL_MOD, fd, &event) }
    }

    /// `epoll_ctl(EPOLL_CTL_DEL)`. A descriptor that is no longer registered is not an error.
    public func remove(_ fd: CInt) {
        var event = epoll_event()
        if epoll_ctl(descriptor, EPOLL_CTL_DEL, fd, &event) == -1, errno == EBADF {
            preconditionFailure("epoll_ctl(DEL, \(fd)) failed with EBADF")
        }
    }

    public struct Ready: Sendable {
        public var token: UInt64
        public var events: Events
    }

    /// `epoll_wait(2)`: waits at most `timeoutMilliseconds` (-1: forever) and returns what became ready.
    public func wait(timeoutMilliseconds: CInt) throws(Errno) -> [Ready] {
        let count = try Syscall.retryingEINTR("epoll_wait") {
            events.withUnsafeMutableBufferPointer { buffer in
                epoll_wait(descriptor, buffer.baseAddress, CInt(buffer.count), timeoutMilliseconds)
            }
        }
        return (0..<Int(count)).map { Ready(token: events[$0].data.u64, events: Events(rawValue: events[$0].events)) }
    }
}

/// An `eventfd(2)` used to wake an `Epoll` wait from another thread.
public final class EventCounter: Sendable {
    public let descriptor: CInt

    /// `eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)`.
    public init() throws(Errno) {
        descriptor = try Syscall.retryingEINTR("eventfd") { eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC)) }
    }

    deinit { Syscall.close(descriptor) }

    /// `eventfd_write(1)`.
    public func signal() {
        _ = eventfd_write(descriptor, 1)
    }

    /// `eventfd_read`: takes every signal so far (none waiting is not an error: the counter is non-blocking).
    public func clear() {
        var value: eventfd_t = 0
        _ = eventfd_read(descriptor, &value)
    }

}
