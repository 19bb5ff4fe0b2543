import Foundation

/// Any JSON value, decoded with Foundation's `JSONDecoder` and written back compactly: publish data is
/// relayed, not interpreted, and must reach clients as one line of JSON.
public indirect enum JSONValue: Codable, Sendable, Equatable {
    case null
    case bool(Bool)
    case integer(Int64)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int64.self) {
            self = .integer(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .integer(let value): try container.encode(value)
        case .number(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }

    /// The string, or integer as a string; nil for any other kind.
    public var idString: String? {
        switch self {
        case .string(let value) where !value.isEmpty: value
        case .integer(let value): String(value)
        default: nil
        }
    }
}

/// The project's JSON coders: compact, with `/` left unescaped (as `JSON.stringify` writes it).
public enum HubJSON {
    public static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        return encoder
    }

    public static func encode(_ value: some Encodable) -> String {
        // Encoding these types cannot fail: no non-finite floats ever get in (the decoder refuses them). If one did,
        // that is a bug, not bad input: trap rather than send a plausible `null`.
        do {
            return String(decoding: try encoder().encode(value), as: UTF8.self)
        } catch {
            preconditionFailure("a hub JSON body failed to encode: \(error)")
        }
    }

    /// `string` as a JSON string literal, escaped as `encode` escapes it: for the few bodies built on every
    /// connection, where `JSONEncoder` was a tenth of a worker's set-up CPU.
    public static func quoted(_ string: String) -> String {
        var quoted = "\""
        quoted.reserveCapacity(string.utf8.count + 2)
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": quoted += "\\\""
            case "\\": quoted += "\\\\"
            case "\n": quoted += "\\n"
            case "\r": quoted += "\\r"
            case "\t": quoted += "\\t"
            case "\u{08}": quoted += "\\b"
            case "\u{0C}": quoted += "\\f"
            case ..<" ":
                let hex = String(scalar.value, radix: 16)
                quoted += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: quoted.unicodeScalars.append(scalar)
            }
        }
        quoted += "\""
        return quoted
    }
}
