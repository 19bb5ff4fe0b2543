import Logging
import NIOCore
import Shared

/// The listening sockets: those systemd passed, else the `--listen` addresses bound here.
enum Listeners {
    /// Descriptors named `control` are the CLI's socket, not HTTP; `metrics` is the metrics listener's.
    static let controlSocketName = "control"
    static let metricsSocketName = "metrics"

    /// The HTTP listeners, the control socket (systemd's socket named `control`, else `controlPath` bound here, else
    /// none), and the metrics listener (systemd's socket named `metrics`, else `metricsAddress` bound here, else none).
    static func open(
        addresses: [String], controlPath: String?, metricsAddress: String?, logger: Logger
    ) throws -> (http: [CInt], control: CInt?, metrics: CInt?) {
        let sockets = SystemdSockets.take()
        var control = sockets.first { $0.name == controlSocketName }?.descriptor
        if control == nil, let controlPath {
            control = try ListeningSocket.bindUnix(path: controlPath, mode: 0o660)
            logger.notice("control socket at \(controlPath)")
        }
        // The accept thread drains it until EAGAIN, like the HTTP listeners.
        if let control { try Syscall.setNonBlocking(control, true) }
        var metrics = sockets.first { $0.name == metricsSocketName }?.descriptor
        if metrics == nil, let metricsAddress {
            let fd = try ListeningSocket.bind(try parse(metricsAddress, option: "--metrics-listen"))
            let bound = try ListeningSocket.localAddress(of: fd)
            logger.notice("metrics and status at http://\(formatted(bound))/metrics", metadata: ["event": "metrics-listening", "address": "\(bound)"])
            metrics = fd
        }
        let http = sockets.filter { $0.name != controlSocketName && $0.name != metricsSocketName }
        return (try openHTTP(http, addresses: addresses, logger: logger), control, metrics)
    }

    private static func openHTTP(_ passed: [SystemdSockets.Passed], addresses: [String], logger: Logger) throws -> [CInt] {
        if !passed.isEmpty {
            for socket in passed {
                try Syscall.setNonBlocking(socket.descriptor, true)
                let address = (try? ListeningSocket.localAddress(of: socket.descriptor)).map { "\($0)" } ?? "?"
                logger.info(
                    "listening on a socket from systemd",
                    metadata: ["event": "listener-inherited", "name": "\(socket.name)", "address": "\(address)", "fd": "\(socket.descriptor)"])
            }
            return passed.map(\.descriptor)
        }
        return try addresses.map { text in
            let address = try parse(text)
            let fd = try ListeningSocket.bind(address)
            let bound = try ListeningSocket.localAddress(of: fd)
            // Printed for people and for tests that asked for port 0.
            logger.notice("listening on http://\(formatted(bound))", metadata: ["event": "listening", "address": "\(bound)"])
            return fd
        }
    }

    struct BadAddress: Error, CustomStringConvertible {
        let description: String
    }

    /// `HOST:PORT` or `[IPv6]:PORT`.
    static func parse(_ text: String, option: String = "--listen") throws -> SocketAddress {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port)
        else { throw BadAddress(description: "\(option) \(text): expected HOST:PORT") }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host == "localhost" { host = "127.0.0.1" }
        do {
            return try SocketAddress(ipAddress: host, port: port)
        } catch {
            throw BadAddress(description: "\(option) \(text): \(host) is not an IP address")
        }
    }

    static func formatted(_ address: SocketAddress) -> String {
        switch address {
        case .v6: "[\(address.ipAddress ?? "::")]:\(address.port ?? 0)"
        default: "\(address.ipAddress ?? "?"):\(address.port ?? 0)"
        }
    }
}
