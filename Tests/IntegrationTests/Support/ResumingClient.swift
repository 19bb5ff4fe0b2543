import Foundation
import Shared
import TestSupport
import Synchronization

/// A client that behaves as a browser's `EventSource` does: when its stream drops it reconnects, sending
/// the id of the last event it saw as `Last-Event-ID`.
///
/// Given several hubs (the hosts of one hub behind a load balancer), it connects to the first and, when a host
/// refuses the reconnection (it is gone), moves on to the next, as a load balancer would send it elsewhere.
final class ResumingClient: Sendable {
    let hubs: [HubProcess]
    let userID: String
    private let state = Mutex(State())

    struct State {
        var finished: [SSETestStream] = []
        var current: SSETestStream?
        var reconnects = 0
        var stopped = false
        var visited: [Int] = []
        /// The index in `hubs` of the host the client is on.
        var host = 0
    }

    var hub: HubProcess { hubs[0] }

    init(hub: HubProcess, userID: String) {
        self.hubs = [hub]
        self.userID = userID
    }

    init(hubs: [HubProcess], userID: String, startingOn host: Int = 0) {
        self.hubs = hubs
        self.userID = userID
        state.withLock { $0.host = host }
    }

    /// The hubs the client's connections went to, in order.
    var hostsVisited: [Int] { state.withLock { $0.visited } }

    /// Every event seen, across all connections, in arrival order.
    var events: [SSEEvent] {
        state.withLock { state in (state.finished + [state.current].compactMap { $0 }).flatMap(\.events) }
    }

    var reconnects: Int { state.withLock { $0.reconnects } }

    /// The numbered payloads (`{"n":…}`) of `name` events, in arrival order.
    func numbers(of name: String) -> [Int] {
        events.filter { $0.event == name }.compactMap { event in
            guard case .object(let fields)? = try? JSONDecoder().decode(JSONValue.self, from: Data(event.data.utf8)),
                case .integer(let n)? = fields["n"]
            else { return nil }
            return Int(n)
        }
    }

    /// Connects, then keeps reconnecting until `stop()`.
    func start() async throws {
        let host = state.withLock { $0.host }
        let first = try await hubs[host].openStream(userID)
        state.withLock {
            $0.current = first
            $0.visited = [host]
        }
        Task { try await self.keepReconnecting() }
    }

    private func keepReconnecting() async throws {
        while true {
            guard let current = state.withLock({ $0.stopped ? nil : $0.current }) else { return }
            try await waitUntil("the stream to drop", timeout: .seconds(120)) { current.isClosed || self.state.withLock { $0.stopped } }
            if state.withLock({ $0.stopped }) { return }
            let lastID = events.last { $0.id != nil }?.id
            var headers: [String: String] = [:]
            if let lastID { headers["Last-Event-ID"] = lastID }
            let (next, host) = try await reconnect(headers: headers)
            state.withLock { state in
                state.finished.append(current)
                state.current = next
                state.reconnects += 1
                state.host = host
                state.visited.append(host)
            }
        }
    }

    /// A new stream on the current host, or on the next one that takes it.
    private func reconnect(headers: [String: String]) async throws -> (SSETestStream, Int) {
        var host = state.withLock { $0.host }
        let deadline = ContinuousClock.now + .seconds(30)
        while true {
            do {
                let stream = try await SSETestStream.open(
                    port: hubs[host].port, target: "/api/sse/stream?token=\(try await hub.token(userID))", headers: headers)
                return (stream, host)
            } catch {
                guard hubs.count > 1, ContinuousClock.now < deadline else { throw error }
                host = (host + 1) % hubs.count
            }
        }
    }

    func stop() async {
        let current = state.withLock { state in
            state.stopped = true
            return state.current
        }
        await current?.close()
    }
}
