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

    /// The value of the cookie `name` in a `Cookie` header (`a=1; name=VALUE; b=2`), without the double quotes
    /// RFC 6265 allows around it. The first of that name wins, as browsers put the most specific path first.
    public static func cookieValue(_ name: String, in header: String) -> String? {
        for pair in header.split(separator: ";") {
            let pair = pair.drop { $0 == " " || $0 == "\t" }
            guard let equals = pair.firstIndex(of: "="), pair[..<equals] == name else { continue }
            var value = pair[pair.index(after: equals)...]
            while let last = value.last, last == " " || last == "\t" { value = value.dropLast() }
            if value.count >= 2, value.first == "\"", value.last == "\"" { value = value.dropFirst().dropLast() }
            return String(value)
        }
        return nil
    }

    /// The first value of `name` in the target's query string, percent-decoded (`+` is a space, as in forms).
    /// Read on every connection the supervisor routes, so it scans the UTF-8 bytes rather than build
    /// `URLComponents` or split by `Character` (both a measurable share of the hand-off's CPU).
    public static func queryValue(_ name: String, in target: String) -> String? {
        let bytes = target.utf8
        guard let question = bytes.firstIndex(of: UInt8(ascii: "?")) else { return nil }
        let nameBytes = name.utf8
        var pairStart = bytes.index(after: question)
        while pairStart < bytes.endIndex {
            let pairEnd = bytes[pairStart...].firstIndex(of: UInt8(ascii: "&")) ?? bytes.endIndex
            let pair = bytes[pairStart..<pairEnd]
            let equals = pair.firstIndex(of: UInt8(ascii: "="))
            if pair[..<(equals ?? pairEnd)].elementsEqual(nameBytes) {
                guard let equals else { return "" }
                let raw = Substring(pair[bytes.index(after: equals)...])
                if !raw.utf8.contains(UInt8(ascii: "%")) && !raw.utf8.contains(UInt8(ascii: "+")) { return String(raw) }
                return raw.replacingOccurrences(of: "+", with: " ").removingPercentEncoding
            }
            pairStart = pairEnd < bytes.endIndex ? bytes.index(after: pairEnd) : pairEnd
        }
        return nil
    }
}
