import Foundation

/// Where a request may carry its JWT: `?token=`, `Authorization: Bearer`, or `x-auth-token`, in that order
/// (the order the service being replaced used).
public enum TokenLocation {
    public static func token(target: String, authorization: String?, xAuthToken: String?) -> String? {
        if let query = queryValue("token", in: target), !query.isEmpty { return query }
        if let authorization, authorization.hasPrefix("Bearer ") {
            let bearer = authorization.dropFirst("Bearer ".count).trimmingCharacters(in: .whitespaces)
            if !bearer.isEmpty { return bearer }
        }
        if let xAuthToken {
            let trimmed = xAuthToken.trimmingCharacters(in: .whitespaces)
            if !trimmed.isEmpty { return trimmed }
        }
        return nil
    }

    /// The first value of `name` in the target's query string, percent-decoded.
    public static func queryValue(_ name: String, in target: String) -> String? {
        guard target.contains("?"), let items = URLComponents(string: target)?.queryItems else { return nil }
        return items.first { $0.name == name }?.value
    }

    /// The target with `token` values masked, for log lines: a token must never reach a log.
    public static func redacted(_ target: String) -> String {
        guard let query = target.firstIndex(of: "?") else { return target }
        let pairs = target[target.index(after: query)...].split(separator: "&", omittingEmptySubsequences: false).map { pair in
            pair.hasPrefix("token=") ? "token=REDACTED" : String(pair)
        }
        return target[..<query] + "?" + pairs.joined(separator: "&")
    }
}
