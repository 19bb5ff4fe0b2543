import Foundation

/// A process's CPU time (user + system), from `/proc/PID/stat`: what tells a busy process from a stopped or
/// deadlocked one, and what the load tool charges each server.
public enum ProcessStat {
    /// CPU seconds `pid` ("self" for this process) has used; nil when it is gone or unreadable.
    public static func cpuSeconds(pid: String = "self") -> Double? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else {
            return nil
        }
        // Fields after the command: state is 0, utime is 11, stime is 12 (proc(5)).
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// The resident memory of `pid`, in KiB (`VmRSS` of `/proc/PID/status`); nil when it is gone or unreadable.
    public static func residentKilobytes(pid: String = "self") -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
        else { return nil }
        return line.split(separator: " ").dropFirst().first.flatMap { Int($0) }
    }
}
