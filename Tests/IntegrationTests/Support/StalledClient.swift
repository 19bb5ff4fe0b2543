import Foundation
import NIOCore
import Shared

#if canImport(Glibc)
import Glibc
#endif

/// A client that sends its request and then never reads: what a frozen browser tab looks like to the server.
/// A small receive buffer makes the server's side fill up sooner.
struct StalledClient: Sendable {
    let fd: CInt

    static func open(port: Int, target: String) async throws -> StalledClient {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TimedOut(description: "socket() failed: \(errno)") }
        var size: CInt = 4096
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<CInt>.size))
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: port)
        let connected = address.withSockAddr { pointer, length in connect(fd, pointer, socklen_t(length)) }
        guard connected == 0 else {
            _ = Glibc.close(fd)
            throw TimedOut(description: "connect() failed: \(errno)")
        }
        let request = TestHTTP.requestBytes("GET", target, headers: ["Accept": "text/event-stream"])
        _ = request.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }
        return StalledClient(fd: fd)
    }

    func close() async { _ = Glibc.close(fd) }
}
