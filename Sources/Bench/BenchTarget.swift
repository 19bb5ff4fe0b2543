import Foundation
import NIOCore
import NIOHTTP1

/// The server under test and how to talk to it: where a subscriber connects and how an event is published.
/// Presets cover sse-hub and the peers in `../shared/peers` (nchan, Pushpin, the Node service).
struct BenchTarget: Codable, Sendable {
    enum Kind: String, Codable, Sendable, CaseIterable {
        case sseHub = "sse-hub", nchan, pushpin, node
    }

    var kind: Kind
    var host: String
    var port: Int
    /// Publishing endpoint (Pushpin publishes to its control port, not the proxy).
    var publishPort: Int
    /// The subscribe path; `{channel}` and `{token}` are filled in per stream.
    var streamTemplate: String
    var publishTemplate: String

    static func preset(_ kind: Kind, host: String, port: Int?) -> BenchTarget {
        switch kind {
        case .sseHub:
            BenchTarget(
                kind: kind, host: host, port: port ?? 8080, publishPort: port ?? 8080,
                streamTemplate: "/api/sse/stream?token={token}", publishTemplate: "/api/sse/publish")
        case .node:
            BenchTarget(
                kind: kind, host: host, port: port ?? 18083, publishPort: port ?? 18083,
                streamTemplate: "/api/sse/stream?token={token}", publishTemplate: "/api/sse/publish")
        case .nchan:
            BenchTarget(
                kind: kind, host: host, port: port ?? 18081, publishPort: port ?? 18081,
                streamTemplate: "/sub/{channel}", publishTemplate: "/pub/{channel}")
        case .pushpin:
            BenchTarget(
                kind: kind, host: host, port: port ?? 18082, publishPort: 5561,
                streamTemplate: "/sub/{channel}", publishTemplate: "/publish/")
        }
    }

    /// sse-hub and the Node service route by user token; nchan and Pushpin by channel in the URL.
    var usesTokens: Bool { kind == .sseHub || kind == .node }

    /// A stream's request; with `lastEventID`, a reconnecting client's (`Last-Event-ID`, as `EventSource` resends it).
    func streamRequest(channel: String, token: String?, lastEventID: [UInt8]? = nil) -> [UInt8] {
        let path = streamTemplate.replacingOccurrences(of: "{channel}", with: channel)
            .replacingOccurrences(of: "{token}", with: token ?? "")
        var request = Array("GET \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n".utf8)
        if let lastEventID {
            request += Array("Last-Event-ID: ".utf8) + lastEventID + Array("\r\n".utf8)
        }
        return request + Array("\r\n".utf8)
    }

    /// sse-hub and the Node service keep topics per user: a stream on a channel first subscribes its user to it.
    func subscribeRequest(channel: String, token: String?) -> [UInt8]? {
        guard usesTokens, let token else { return nil }
        let body = #"{"topics":["\#(channel)"]}"#
        return Array(
            ("POST /api/sse/subscribe HTTP/1.1\r\nHost: \(host):\(port)\r\nConnection: close\r\n"
                + "Content-Type: application/json\r\nx-auth-token: \(token)\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)").utf8)
    }

    /// One publish request: `sequence` and the send time travel in the event's data.
    /// With `toUser`, `channel` names a user (sse-hub and the Node service publish with `userId`; nchan and
    /// Pushpin have a channel per user).
    /// With `keepingConnection`, the request leaves its connection open for the next one (HTTP/1.1's default).
    func publishRequest(
        channel: String?, toUser: Bool = false, sequence: Int, sentAt: UInt64, publisherToken: String?, keepingConnection: Bool = false
    ) -> ByteBuffer {
        let data = #"{"seq":\#(sequence),"t":\#(sentAt)}"#
        let path: String
        var headers = "Host: \(host):\(publishPort)\r\n" + (keepingConnection ? "" : "Connection: close\r\n")
        let body: String
        switch kind {
        case .sseHub, .node:
            path = publishTemplate
            headers += "Content-Type: application/json\r\nAuthorization: Bearer \(publisherToken ?? "")\r\n"
            let topic = channel.map { toUser ? #","userId":"\#($0)""# : #","topic":"\#($0)""# } ?? ""
            body = #"{"event":"bench","data":\#(data)\#(topic)}"#
        case .nchan:
            path = publishTemplate.replacingOccurrences(of: "{channel}", with: channel ?? "all")
            headers += "Content-Type: text/plain\r\nX-EventSource-Event: bench\r\n"
            body = data
        case .pushpin:
            path = publishTemplate
            headers += "Content-Type: application/json\r\n"
            let content = "event: bench\\ndata: \(data.replacingOccurrences(of: "\"", with: "\\\""))\\n\\n"
            body = #"{"items":[{"channel":"\#(channel ?? "all")","formats":{"http-stream":{"content":"\#(content)"}}}]}"#
        }
        return ByteBuffer(string: "POST \(path) HTTP/1.1\r\n\(headers)Content-Length: \(body.utf8.count)\r\n\r\n\(body)")
    }
}
