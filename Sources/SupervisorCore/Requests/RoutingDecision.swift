import NIOHTTP1
import Shared

/// Who answers a connection, decided from its head alone, before any token is verified.
public enum RoutingDecision: Sendable, Equatable {
    /// A worker serves it; the token (verified next) names the user, hence the worker.
    case handOff(HandoffRequest)
    /// The supervisor's own SwiftNIO pipeline serves it: health, the publishers' API, CORS preflight.
    case serveLocally
    /// Answered at once by the supervisor with this error, the request read no further by anyone.
    case refuse(APIError, origin: String?)

    /// What a handed-off connection carries besides its descriptor.
    public struct HandoffRequest: Sendable, Equatable {
        public var route: HandoffRoute
        public var token: String?
        /// A stream: the id it resumes after (`Last-Event-ID`, else `?lastEventId=` as polyfills send it).
        public var lastEventID: String?
        /// A stream: the request's `Origin`, for the CORS headers of its response.
        public var origin: String?
    }

    /// The decision for a whole head, as `RequestHeadPeek.headLength` delimits it.
    public init(head: [UInt8]) {
        do {
            self.init(try RequestHeadPeek.parse(head))
        } catch {
            self = .refuse(error.error, origin: nil)
        }
    }

    public init(_ peek: RequestHeadPeek) {
        switch APIRoute.resolve(method: peek.method, target: peek.target) {
        case .notFound:
            self = .refuse(.notFound, origin: peek.origin)
        case .methodNotAllowed(let route):
            // Also a method SwiftNIO's parser does not know: answered here, it is never parsed again.
            self = .refuse(.methodNotAllowed(route), origin: peek.origin)
        case .preflight:
            self = .serveLocally
        case .route(let route):
            guard let handoffRoute = route.handoffRoute else {
                self = .serveLocally
                return
            }
            let token = TokenLocation.token(target: peek.target, authorization: peek.authorization, xAuthToken: peek.xAuthToken)
            guard handoffRoute == .stream else {
                self = .handOff(HandoffRequest(route: handoffRoute, token: token))
                return
            }
            // A stream's body is chunked, which HTTP/1.0 does not have.
            guard peek.version == .http1_1 else {
                self = .refuse(APIError(status: 505, "An event stream needs HTTP/1.1"), origin: peek.origin)
                return
            }
            let lastEventID = peek.lastEventID ?? TokenLocation.queryValue("lastEventId", in: peek.target)
            self = .handOff(HandoffRequest(route: .stream, token: token, lastEventID: lastEventID, origin: peek.origin))
        }
    }
}
