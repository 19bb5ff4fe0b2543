import Foundation
import Shared

/// The server's processes (its roots and all their descendants: several for a cluster), read from `/proc`:
/// resident memory and CPU time.
struct ServerProcesses {
    let roots: [Int32]

    /// The root and every descendant, found through each process's parent id.
    func pids() -> [Int32] {
        var children: [Int32: [Int32]] = [:]
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        for entry in entries {
            guard let pid = Int32(entry), let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 1, let parent = Int32(fields[1]) { children[parent, default: []].append(pid) }
        }
        var result: [Int32] = []
        var pending = roots
        while let pid = pending.popLast() {
            result.append(pid)
            pending += children[pid] ?? []
        }
        return result
    }

    /// Sum of `VmRSS` over the processes, in KiB.
    func residentKilobytes() -> Int {
        pids().reduce(0) { $0 + (ProcessStat.residentKilobytes(pid: String($1)) ?? 0) }
    }

    /// Sum of user + system CPU seconds over the processes.
    func cpuSeconds() -> Double {
        pids().reduce(0) { $0 + ProcessCPU.seconds(pid: String($1)) }
    }
}
