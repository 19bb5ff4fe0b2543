import Foundation

/// Where a request may carry its JWT: `?token=`, `Authorization: Bearer`, or `x-auth-token`, in that order
/// (the order the service being replaced used).
public enum TokenLocation {
    public static func token(target: String, authorization: String?, xAuthToken: String?) -> String? {
        if let query = queryValue("token", in: target), !query.isEmpty { return query }
        if let authorization, authorization.utf8.starts(with: "Bearer ".utf8) {
            let bearer = trimmingOptionalWhitespace(authorization.utf8.dropFirst("Bearer ".utf8.count))
            if !bearer.isEmpty { return bearer }
        }
        if let xAuthToken {
            let trimmed = trimmingOptionalWhitespace(xAuthToken.utf8[...])
            if !trimmed.isEmpty { return trimmed }
        }
        return nil
    }

    /// Without the spaces and tabs around it (HTTP's optional whitespace, RFC 9110 §5.6.3). Byte by byte: Foundation's
    /// `trimmingCharacters(in:)` was a visible share of a publish's CPU, and a token is ASCII anyway.
    private static func trimmingOptionalWhitespace(_ bytes: Substring.UTF8View) -> String {
        let isWhitespace = { (byte: UInt8) in byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }
        guard let first = bytes.firstIndex(where: { !isWhitespace($0) }), let last = bytes.lastIndex(where: { !isWhitespace($0) }) else {
            return ""
        }
        return String(Substring(bytes[first...last]))
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
        var target = target
        // The contiguous bytes: `String.UTF8View`'s own scans go byte by byte through its generic index.
        return target.withUTF8 { bytes in
            guard let question = bytes.firstIndex(of: UInt8(ascii: "?")) else { return nil }
            var pairStart = question + 1
            while pairStart < bytes.count {
                let pairEnd = bytes[pairStart...].firstIndex(of: UInt8(ascii: "&")) ?? bytes.count
                let pair = UnsafeBufferPointer(rebasing: bytes[pairStart..<pairEnd])
                let equals = pair.firstIndex(of: UInt8(ascii: "="))
                if UnsafeBufferPointer(rebasing: pair[..<(equals ?? pair.count)]).elementsEqual(name.utf8) {
                    guard let equals else { return "" }
                    // Cut at ASCII bytes of a valid string, so still valid UTF-8.
                    let raw = UnsafeBufferPointer(rebasing: pair[(equals + 1)...])
                    let value = String(decoding: raw, as: UTF8.self)
                    if !raw.contains(UInt8(ascii: "%")) && !raw.contains(UInt8(ascii: "+")) { return value }
                    return value.replacingOccurrences(of: "+", with: " ").removingPercentEncoding
                }
                pairStart = pairEnd + 1
            }
            return nil
        }
    }
}
