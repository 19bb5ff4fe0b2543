import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A stand-in for systemd's notification socket (`NOTIFY_SOCKET`): an `AF_UNIX` datagram socket that
/// collects what the supervisor sends with `sd_notify`, one message per datagram.
final class NotifySocket: Sendable {
    let path: String
    private let fd: CInt
    private let received = Mutex<[(ContinuousClock.Instant, String)]>([])

    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("sse-notify-\(UUID().uuidString).sock").path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw TimedOut(description: "socket(AF_UNIX) failed: \(errno)") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            _ = path.utf8CString.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0.prefix(buffer.count))) }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else { throw TimedOut(description: "bind(\(path)) failed: \(errno)") }
    }

    /// Every message so far (each holds one or more `KEY=value` lines), with when it was read.
    var messages: [(at: ContinuousClock.Instant, text: String)] {
        received.withLock { received in
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
                guard count > 0 else { break }
                received.append((.now, String(decoding: buffer[..<count], as: UTF8.self)))
            }
            return received
        }
    }

    /// The assignments (`READY=1`, `STATUS=...`) in order.
    var assignments: [String] { messages.flatMap { $0.text.split(separator: "\n").map(String.init) } }

    func count(_ assignment: String) -> Int { assignments.filter { $0 == assignment }.count }

    deinit {
        _ = close(fd)
        unlink(path)
    }
}
