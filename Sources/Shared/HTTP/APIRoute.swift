import NIOHTTP1

/// The HTTP API, shared by the supervisor (which routes) and the workers (which check what they were handed).
public enum APIRoute: String, Sendable, CaseIterable {
    case stream = "/api/sse/stream"
    case subscribe = "/api/sse/subscribe"
    case unsubscribe = "/api/sse/unsubscribe"
    case publish = "/api/sse/publish"
    case stats = "/api/sse/stats"
    case presence = "/api/sse/presence"
    case health = "/api/health"

    public var method: HTTPMethod {
        switch self {
        case .stream, .stats, .health, .presence: .GET
        case .subscribe, .unsubscribe, .publish: .POST
        }
    }

    /// The worker that serves this route for a user, rather than the supervisor.
    public var handoffRoute: HandoffRoute? {
        switch self {
        case .stream: .stream
        case .subscribe: .subscribe
        case .unsubscribe: .unsubscribe
        case .publish, .stats, .health, .presence: nil
        }
    }

    public enum Resolution: Sendable, Equatable {
        case route(APIRoute)
        /// CORS preflight for a known path.
        case preflight(APIRoute)
        case methodNotAllowed(APIRoute)
        case notFound
    }

    /// Matches a request target (path, optionally with a query) and method.
    public static func resolve(method: HTTPMethod, target: String) -> Resolution {
        guard let route = APIRoute(rawValue: String(path(of: target))) else { return .notFound }
        if method == route.method { return .route(route) }
        if method == .OPTIONS { return .preflight(route) }
        return .methodNotAllowed(route)
    }

    /// The path of a request target in origin-form (`/api/health?x`) or absolute-form (`http://host/api/health?x`,
    /// which RFC 9112 §3.2.2 obliges a server to accept).
    public static func path(of target: String) -> Substring {
        let bytes = target.utf8
        var start = bytes.startIndex
        if bytes.first != UInt8(ascii: "/"), let colon = bytes.firstIndex(of: UInt8(ascii: ":")),
            bytes[colon...].starts(with: "://".utf8)
        {
            let authority = bytes.index(colon, offsetBy: 3)
            start = bytes[authority...].firstIndex { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "?") } ?? bytes.endIndex
        }
        let end = bytes[start...].firstIndex(of: UInt8(ascii: "?")) ?? bytes.endIndex
        return Substring(bytes[start..<end])
    }
}
