/// The signature algorithms a token may be signed with (RFC 7518 names, as in a JWT header's `alg`). `none` and
/// every other name are not here, so a token that names them is refused before any key is looked at.
public enum JWSAlgorithm: String, Sendable, CaseIterable, Codable {
    case hs256 = "HS256"
    case rs256 = "RS256"
    case rs384 = "RS384"
    case rs512 = "RS512"
    case ps256 = "PS256"
    case es256 = "ES256"
    case es384 = "ES384"
    case edDSA = "EdDSA"

    /// The algorithms an RSA key may be bound to.
    public var isRSA: Bool { [.rs256, .rs384, .rs512, .ps256].contains(self) }
}
