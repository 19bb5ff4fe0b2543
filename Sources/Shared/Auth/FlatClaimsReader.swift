import Foundation
import JWTKit

/// Reads the claims of the usual token (one flat JSON object of ASCII strings and integers, perhaps a `user` object
/// of the same) without Foundation's `JSONDecoder`, which was a fifth of the supervisor's CPU in a storm of first
/// connections. It gives up (nil) on anything it cannot read with certainty (an escape, a byte outside printable
/// ASCII, an id with a fraction, an array, a nested object, a repeated key, an `exp` that is not a number...), and
/// the caller then decodes with `JSONDecoder` as before. Where it does read, it reads what `JSONDecoder` reads:
/// the fuzz target `token-claims` checks exactly that on every input.
public enum FlatClaimsReader {
    /// The claims in `json`, as `HubClaims(from:)` decodes them with the default publisher claim (`role=publisher`);
    /// nil when the reader cannot be sure of them.
    public static func read(_ json: [UInt8]) -> HubClaims? {
        json.withUnsafeBufferPointer { bytes in
            var reader = Reader(bytes: bytes)
            guard let members = reader.object(allowingUser: true), reader.atEnd else { return nil }
            var claims = HubClaims()
            for (key, value) in members {
                switch key {
                case "sub", "id":
                    // Whether the decoder reads an integer out of `1.0` is its own business: not guessed at here.
                    if case .fraction = value { return nil }
                    if key == "sub" { claims.sub = value.id } else { claims.id = value.id }
                case "user":
                    switch value {
                    case .user(let id): claims.user = HubClaims.UserClaim(id: id)
                    case .null, .string, .integer, .fraction, .literal: claims.user = nil  // not an object: absent, as decoded
                    }
                case "role", "iss":
                    if case .fraction = value { return nil }
                    if key == "role" { claims.role = value.string } else { claims.iss = value.string }
                case "exp", "nbf":
                    // Decoded with `try`: anything but a number fails the token, which the decoder must say.
                    let seconds: Double
                    switch value {
                    case .integer(let integer): seconds = Double(integer)
                    case .fraction(let fraction): seconds = fraction
                    default: return nil
                    }
                    let date = Date(timeIntervalSince1970: seconds)
                    if key == "exp" { claims.exp = ExpirationClaim(value: date) } else { claims.nbf = NotBeforeClaim(value: date) }
                case "aud":
                    switch value {
                    case .string(let audience): claims.aud = AudienceClaim(value: [audience])
                    case .null: claims.aud = nil
                    case .integer, .fraction, .literal, .user: return nil
                    }
                default: continue
                }
            }
            claims.holdsPublisherClaim = claims.role == PublisherClaim.role.value
            return claims
        }
    }

    enum Value {
        case string(String)
        case integer(Int64)
        /// A number with a fraction or an exponent (jwt-kit writes `exp` so), as a finite `Double`.
        case fraction(Double)
        /// `null`.
        case null
        /// `true` or `false`.
        case literal
        /// An object (only `user` may be one): its `id`, as `FlexibleID` decodes it.
        case user(FlexibleID?)

        /// As `FlexibleID` decodes it (`try?`: a wrong type is absent).
        var id: FlexibleID? {
            switch self {
            case .string(let value) where !value.isEmpty: FlexibleID(value)
            case .integer(let value): FlexibleID(String(value))
            default: nil
            }
        }

        /// As a `String` claim decodes (`try?`: a wrong type is absent).
        var string: String? {
            if case .string(let value) = self { value } else { nil }
        }
    }

    private struct Reader {
        let bytes: UnsafeBufferPointer<UInt8>
        var index = 0

        var atEnd: Bool {
            mutating get {
                skipWhitespace()
                return index == bytes.count
            }
        }

        /// `{ "key": value, ... }`, every key once; nested objects only as the value of `user`, when allowed.
        mutating func object(allowingUser: Bool) -> [(String, Value)]? {
            skipWhitespace()
            guard take(UInt8(ascii: "{")) else { return nil }
            var members: [(String, Value)] = []
            skipWhitespace()
            if take(UInt8(ascii: "}")) { return members }
            while true {
                skipWhitespace()
                guard let key = string() else { return nil }
                guard !members.contains(where: { $0.0 == key }) else { return nil }
                skipWhitespace()
                guard take(UInt8(ascii: ":")) else { return nil }
                skipWhitespace()
                let value: Value
                if allowingUser, key == "user", peek == UInt8(ascii: "{") {
                    guard let inner = object(allowingUser: false) else { return nil }
                    let id = inner.first(where: { $0.0 == "id" })?.1
                    // The decoder reads an integral one (`4e2`) as an integer id: left to it, as at the top level.
                    if case .fraction = id { return nil }
                    value = .user(id?.id)
                } else {
                    guard let scalar = scalar() else { return nil }
                    value = scalar
                }
                members.append((key, value))
                skipWhitespace()
                if take(UInt8(ascii: ",")) { continue }
                return take(UInt8(ascii: "}")) ? members : nil
            }
        }

        private var peek: UInt8? { index < bytes.count ? bytes[index] : nil }

        private mutating func take(_ byte: UInt8) -> Bool {
            guard peek == byte else { return false }
            index += 1
            return true
        }

        private mutating func skipWhitespace() {
            while let byte = peek, byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D { index += 1 }
        }

        /// A string of printable ASCII without escapes.
        private mutating func string() -> String? {
            guard take(UInt8(ascii: "\"")) else { return nil }
            let start = index
            while let byte = peek {
                if byte == UInt8(ascii: "\"") {
                    let value = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
                    index += 1
                    return value
                }
                guard byte >= 0x20, byte < 0x7F, byte != UInt8(ascii: "\\") else { return nil }
                index += 1
            }
            return nil
        }

        private mutating func scalar() -> Value? {
            guard let next = peek else { return nil }
            switch next {
            case UInt8(ascii: "\""): return string().map(Value.string)
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return number()
            case UInt8(ascii: "t"): return word("true") ? .literal : nil
            case UInt8(ascii: "f"): return word("false") ? .literal : nil
            case UInt8(ascii: "n"): return word("null") ? .null : nil
            default: return nil
            }
        }

        /// A JSON number: `-?(0|[1-9][0-9]*)` that fits an `Int64` is an integer; with a fraction `(\.[0-9]+)?` or an
        /// exponent `([eE][+-]?[0-9]{1,3})?` it is parsed as a `Double` (correctly rounded, as the decoder parses it).
        private mutating func number() -> Value? {
            let start = index
            _ = take(UInt8(ascii: "-"))
            let integerStart = index
            guard skipDigits() > 0, !(index - integerStart > 1 && bytes[integerStart] == UInt8(ascii: "0")) else { return nil }
            var isInteger = true
            if take(UInt8(ascii: ".")) {
                guard skipDigits() > 0 else { return nil }
                isInteger = false
            }
            if take(UInt8(ascii: "e")) || take(UInt8(ascii: "E")) {
                if !take(UInt8(ascii: "+")) { _ = take(UInt8(ascii: "-")) }
                // At most three digits: a `Double` ends at e±324, and the decoder refuses an exponent past `Int`'s
                // range where `Double(_:)` reads 0 or infinity (found by libFuzzer: `91e-10223372036854775808`).
                guard (1...3).contains(skipDigits()) else { return nil }
                isInteger = false
            }
            let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
            if isInteger { return Int64(text).map(Value.integer) }  // nil past Int64: given up
            // Past the normal range (infinity, an underflow to zero, a subnormal) the decoder refuses or rounds its own
            // way (found by libFuzzer: it refuses `25e-400`, which `Double(_:)` reads as 0): it decides.
            guard let value = Double(text), value.isNormal else { return nil }
            return .fraction(value)
        }

        private mutating func skipDigits() -> Int {
            let start = index
            while let byte = peek, byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") { index += 1 }
            return index - start
        }

        private mutating func word(_ word: StaticString) -> Bool {
            let count = word.utf8CodeUnitCount
            guard index + count <= bytes.count else { return false }
            for offset in 0..<count where bytes[index + offset] != word.utf8Start[offset] { return false }
            index += count
            return true
        }
    }
}
