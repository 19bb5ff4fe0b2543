import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `CLOCK_MONOTONIC` (`clock_gettime(2)`): one clock for every process on the machine, so a publisher's send
/// time and a subscriber's receive time in another process can be subtracted; systemd wants it for `RELOADING=1`.
public enum MonotonicClock {
    public static func nanoseconds() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }
}

/// Wall-clock time in milliseconds since 1970: what event timestamps, history ages and epochs are measured in,
/// by the supervisor and the workers alike.
public enum WallClock {
    public static func milliseconds() -> Int64 {
        Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
    }

    /// Whole seconds since 1970: what a token's `exp` is counted in.
    public static func seconds() -> Int64 {
        Int64(Date().timeIntervalSince1970.rounded(.down))
    }
}

extension Duration {
    /// Whole milliseconds, rounded toward zero: what history ages and `poll`/`epoll_wait` timeouts count in.
    public var wholeMilliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
    public var wholeNanoseconds: Int64 { components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000 }
}

extension ContinuousClock.Instant {
    /// A `poll`/`epoll_wait` timeout that ends no earlier than this instant: the milliseconds from now, rounded up
    /// (a wait cut short by rounding would wake only to wait again); 0 once the instant has passed.
    public var pollTimeoutMilliseconds: CInt {
        CInt(clamping: max(0, ContinuousClock.now.duration(to: self).wholeMilliseconds + 1))
    }
}
