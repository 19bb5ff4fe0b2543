import NIOHTTP1
import Shared

/// `--auth-cookie`: the cookie that may carry a token, and the origins whose pages may send it.
public struct CookieAuth: Sendable, Equatable {
    public var name: String
    public var cors: CORSPolicy

    public init(name: String, cors: CORSPolicy) {
        self.name = name
        self.cors = cors
    }

    /// A page's origin that may use the cookie: one `--cors-origin` lists by name, or this very host (a page
    /// served beside the hub, whose `Origin` names the `Host` it asked).
    func accepts(origin: String, host: String?) -> Bool {
        if cors.lists(origin) { return true }
        guard let host, let schemeEnd = origin.range(of: "://") else { return false }
        return origin[schemeEnd.upperBound...].lowercased() == host.lowercased()
    }
}

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
    public init(head: [UInt8], cookieAuth: CookieAuth? = nil) {
        do {
            self.init(try RequestHeadPeek.parse(head), cookieAuth: cookieAuth)
        } catch {
            self = .refuse(error.error, origin: nil)
        }
    }

    public init(_ peek: RequestHeadPeek, cookieAuth: CookieAuth? = nil) {
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
            var token = TokenLocation.token(target: peek.target, authorization: peek.authorization, xAuthToken: peek.xAuthToken)
            if let cookieAuth, let cookie = peek.cookie, let cookieToken = TokenLocation.cookieValue(cookieAuth.name, in: cookie),
                !cookieToken.isEmpty
            {
                if let token, token != cookieToken {
                    // Two credentials that disagree: which one the client meant is not the server's to guess.
                    self = .refuse(.conflictingTokens, origin: peek.origin)
                    return
                }
                // A cookie rides along on requests that other sites' pages make; a token in the URL or a header
                // does not. So a cookie alone is taken only from a page of a listed origin (or of this host).
                if token == nil, let origin = peek.origin, !cookieAuth.accepts(origin: origin, host: peek.host) {
                    self = .refuse(.cookieFromOtherOrigin, origin: origin)
                    return
                }
                token = cookieToken
            }
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
