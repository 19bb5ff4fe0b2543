import Foundation
import Shared
import TestSupport
import Synchronization

/// A client that behaves as a browser's `EventSource` does: when its stream drops it reconnects, sending
/// the id of the last event it saw as `Last-Event-ID`.
final class ResumingClient: Sendable {
    let hub: HubProcess
    let userID: String
    private let state = Mutex(State())

    struct State {
        var finished: [SSETestStream] = []
        var current: SSETestStream?
        var reconnects = 0
        var stopped = false
    }

    init(hub: HubProcess, userID: String) {
        self.hub = hub
        self.userID = userID
    }

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
        let first = try await hub.openStream(userID)
        state.withLock { $0.current = first }
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
            let next = try await SSETestStream.open(
                port: hub.port, target: "/api/sse/stream?token=\(try await hub.token(userID))", headers: headers)
            state.withLock { state in
                state.finished.append(current)
                state.current = next
                state.reconnects += 1
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
