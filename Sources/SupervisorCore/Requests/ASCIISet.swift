/// The bytes HTTP/1.1's grammar names.
enum ASCII {
    static let lineFeed = UInt8(ascii: "\n")
    static let carriageReturn = UInt8(ascii: "\r")
    static let space = UInt8(ascii: " ")
    static let tab = UInt8(ascii: "\t")
    static let colon = UInt8(ascii: ":")
    static let slash = UInt8(ascii: "/")
    static let question = UInt8(ascii: "?")
    static let percent = UInt8(ascii: "%")
    static let asterisk = UInt8(ascii: "*")

    static func isWhitespace(_ byte: UInt8) -> Bool { byte == space || byte == tab }

    static func isHexDigit(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || (byte | 0x20 >= UInt8(ascii: "a") && byte | 0x20 <= UInt8(ascii: "f"))
    }

    static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    /// field-vchar / SP / HTAB (RFC 9110 §5.5): every byte but the controls; obs-text (0x80–0xFF) is allowed.
    static func isFieldValueByte(_ byte: UInt8) -> Bool { byte == tab || (byte >= space && byte != 0x7F) }
}

/// A set of ASCII bytes as two 64-bit masks: literal masks, so no lazy global initialisation on the hot path.
/// `RequestHeadPeekTests` checks each against the characters the RFC lists.
struct ASCIISet: Sendable {
    let low: UInt64
    let high: UInt64

    @inline(__always) func contains(_ byte: UInt8) -> Bool {
        byte < 64 ? (low >> byte) & 1 == 1 : byte < 128 ? (high >> (byte - 64)) & 1 == 1 : false
    }

    /// tchar (RFC 9110 §5.6.2): ALPHA DIGIT ! # $ % & ' * + - . ^ _ ` | ~
    static let token = ASCIISet(low: 0x03ff_6cfa_0000_0000, high: 0x57ff_ffff_c7ff_fffe)
    /// The bytes of an origin-form target (RFC 3986 pchar, `/`, `?`): unreserved, sub-delims, `:` `@` `/` `?`, and `%`.
    static let target = ASCIISet(low: 0xafff_fff2_0000_0000, high: 0x47ff_fffe_87ff_ffff)
    /// The bytes of an authority without userinfo (host, port, IP literal): unreserved, sub-delims, `:` `[` `]`, and `%`.
    static let authority = ASCIISet(low: 0x2fff_7ff2_0000_0000, high: 0x47ff_fffe_afff_fffe)
}
