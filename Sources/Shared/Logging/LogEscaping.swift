import Logging

/// Makes text safe to write into one log line: user ids, topics, request targets and error descriptions can
/// hold whatever a client sent, and a line feed in one of them would otherwise forge a log line of its own
/// on stderr (or under `journalctl -o cat`).
///
/// Escaped: C0 controls (`\n`, `\r`, `\t` by name, the others as `\u{1b}`), DEL and the C1 controls (U+0085
/// NEL among them), the Unicode line and paragraph separators (U+2028, U+2029), the bidirectional overrides
/// and isolates (U+202A–U+202E, U+2066–U+2069, which reorder what a reader sees), and the backslash itself,
/// so an escaped line feed and a client's literal `\n` stay distinguishable.
public enum LogEscaping {
    public static func escape(_ text: String) -> String {
        // Fast path: printable ASCII without a backslash, which is nearly every line.
        guard text.utf8.contains(where: { $0 < 0x20 || $0 >= 0x7F || $0 == UInt8(ascii: "\\") }) else { return text }
        var escaped = ""
        escaped.reserveCapacity(text.utf8.count + 8)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\n": escaped += "\\n"
            case "\r": escaped += "\\r"
            case "\t": escaped += "\\t"
            case "\\": escaped += "\\\\"
            case _ where needsEscaping(scalar): escaped += "\\u{\(String(scalar.value, radix: 16))}"
            default: escaped.unicodeScalars.append(scalar)
            }
        }
        return escaped
    }

    /// The value with every string in it (dictionary keys too) escaped.
    public static func escape(_ value: Logger.MetadataValue) -> Logger.MetadataValue {
        switch value {
        case .string(let text): .string(escape(text))
        case .stringConvertible(let convertible): .string(escape(convertible.description))
        case .array(let values): .array(values.map(escape))
        case .dictionary(let values): .dictionary(escape(values))
        }
    }

    public static func escape(_ metadata: Logger.Metadata) -> Logger.Metadata {
        Dictionary(metadata.map { (escape($0.key), escape($0.value)) }) { first, _ in first }
    }

    private static func needsEscaping(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00..<0x20, 0x7F...0x9F, 0x2028, 0x2029, 0x202A...0x202E, 0x2066...0x2069: true
        default: false
        }
    }
}
