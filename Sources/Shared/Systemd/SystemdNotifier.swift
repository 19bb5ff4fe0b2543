import CSystemd

/// Messages to the service manager (`sd_notify(3)`), for `Type=notify` units. Every call is a no-op
/// returning false when the process was not started by systemd (`NOTIFY_SOCKET` unset).
public enum SystemdNotifier {
    public enum State: Sendable, Hashable {
        /// Startup is complete: `READY=1`.
        case ready
        /// Shutdown has begun: `STOPPING=1`.
        case stopping
        /// The service is alive: `WATCHDOG=1`, expected every `watchdogInterval`.
        case watchdog
        /// A one-line summary shown by `systemctl status`: `STATUS=...`.
        case status(String)
        /// A reload has begun: `RELOADING=1` with `MONOTONIC_USEC=` (`READY=1` follows when it is done).
        case reloading

        var assignment: String {
            switch self {
            case .ready: "READY=1"
            case .stopping: "STOPPING=1"
            case .watchdog: "WATCHDOG=1"
            // The protocol is newline-separated: a status must stay on its line.
            case .status(let text): "STATUS=" + text.split(whereSeparator: \.isNewline).joined(separator: " ")
            case .reloading: "RELOADING=1\nMONOTONIC_USEC=\(MonotonicClock.nanoseconds() / 1000)"
            }
        }
    }

    /// Sends `states` in one datagram. True when systemd got it.
    @discardableResult
    public static func notify(_ states: State...) -> Bool {
        sd_notify(0, states.map(\.assignment).joined(separator: "\n")) > 0
    }

    /// How often `WATCHDOG=1` must arrive (`WatchdogSec=`), from `sd_watchdog_enabled(3)`; nil when the
    /// watchdog is off or meant for another process (`WATCHDOG_PID`).
    public static var watchdogTimeout: Duration? {
        var microseconds: UInt64 = 0
        guard sd_watchdog_enabled(0, &microseconds) > 0, microseconds > 0 else { return nil }
        return .microseconds(Int64(clamping: microseconds))
    }
}
