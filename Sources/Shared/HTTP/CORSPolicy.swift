import NIOHTTP1

/// Cross-origin access for browsers, from `--cors-origin` (repeatable; `*` allows any). Empty: no CORS headers at all.
/// With `allowsCredentials` (a cookie may carry the token, `--auth-cookie`), an origin listed by name is also told
/// `Access-Control-Allow-Credentials: true`; `*` never is (browsers refuse credentials with it, and a cookie must not
/// be usable from any page).
public struct CORSPolicy: Sendable, Equatable {
    public var allowedOrigins: [String]
    public var allowsCredentials: Bool

    public init(allowedOrigins: [String], allowsCredentials: Bool = false) {
        self.allowedOrigins = allowedOrigins
        self.allowsCredentials = allowsCredentials
    }

    /// Whether `origin` is listed by name (not merely allowed by `*`).
    public func lists(_ origin: String) -> Bool { allowedOrigins.contains(origin) }

    public var isEnabled: Bool { !allowedOrigins.isEmpty }

    public static let allowedRequestHeaders = "Authorization, x-auth-token, Content-Type, Last-Event-ID"

    /// The headers every API response carries for a request from `origin`.
    public func responseHeaders(origin: String?) -> [(String, String)] {
        if allowsCredentials, let origin, lists(origin), origin != "*" {
            return [("Access-Control-Allow-Origin", origin), ("Access-Control-Allow-Credentials", "true"), ("Vary", "Origin")]
        }
        if allowedOrigins.contains("*") { return [("Access-Control-Allow-Origin", "*")] }
        guard let origin, allowedOrigins.contains(origin) else { return isEnabled ? [("Vary", "Origin")] : [] }
        return [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
    }

    /// The extra headers of a `204` answer to a preflight `OPTIONS` request.
    public func preflightHeaders(origin: String?, route: APIRoute) -> [(String, String)] {
        responseHeaders(origin: origin) + [
            ("Access-Control-Allow-Methods", "\(route.method.rawValue), OPTIONS"),
            ("Access-Control-Allow-Headers", Self.allowedRequestHeaders),
            ("Access-Control-Max-Age", "600"),
        ]
    }
}
