import Foundation

/// The kernel's memory that connections take, read from `/proc`: slab (socket structures, file and epoll entries;
/// `/proc/meminfo`) and TCP buffer memory (`/proc/net/sockstat`, in pages). Machine-wide: a run on loopback counts
/// both ends of every connection, the load tool's socket and the server's.
struct KernelMemory: Codable, Sendable {
    var slabKilobytes: Int
    var unreclaimableSlabKilobytes: Int
    var tcpBufferKilobytes: Int
    var tcpSocketsInUse: Int

    static func read() -> KernelMemory? {
        guard let meminfo = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
            let sockstat = try? String(contentsOfFile: "/proc/net/sockstat", encoding: .utf8),
            let slab = ProcFields.value("Slab:", in: meminfo), let unreclaimable = ProcFields.value("SUnreclaim:", in: meminfo),
            let tcp = sockstat.split(separator: "\n").first(where: { $0.hasPrefix("TCP:") })
        else { return nil }
        // "TCP: inuse 2 orphan 0 tw 39986 alloc 2 mem 276"
        let words = tcp.split(separator: " ")
        func after(_ name: String) -> Int? { words.firstIndex(of: Substring(name)).flatMap { Int(words[$0 + 1]) } }
        guard let pages = after("mem"), let inUse = after("inuse") else { return nil }
        return KernelMemory(
            slabKilobytes: slab, unreclaimableSlabKilobytes: unreclaimable, tcpBufferKilobytes: pages * Int(getpagesize()) / 1024,
            tcpSocketsInUse: inUse)
    }
}
