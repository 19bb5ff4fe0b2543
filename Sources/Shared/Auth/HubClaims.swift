import JWTKit

/// The claims sse-hub reads from a token. Unknown claims are ignored; a claim of an unexpected type
/// is treated as absent (as the service being replaced did), never as a crash.
public struct HubClaims: JWTPayload, Equatable {
    public var sub: FlexibleID?
    public var user: UserClaim?
    public var id: FlexibleID?
    public var role: String?
    public var exp: ExpirationClaim?
    public var nbf: NotBeforeClaim?
    public var aud: AudienceClaim?
    public var iss: String?
    /// Whether the token holds the publisher claim the decoder was given (`PublisherClaim`; `role=publisher` when
    /// it was given none). Read while decoding, never encoded.
    public var holdsPublisherClaim = false

    enum CodingKeys: String, CodingKey {
        case sub, user, id, role, exp, nbf, aud, iss
    }

    public struct UserClaim: Codable, Sendable, Equatable {
        public var id: FlexibleID?

        public init(id: FlexibleID?) { self.id = id }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            id = try? container.decodeIfPresent(FlexibleID.self, forKey: .id)
        }
    }

    public init(
        sub: FlexibleID? = nil, user: UserClaim? = nil, id: FlexibleID? = nil, role: String? = nil,
        exp: ExpirationClaim? = nil, nbf: NotBeforeClaim? = nil, aud: AudienceClaim? = nil, iss: String? = nil
    ) {
        self.sub = sub
        self.user = user
        self.id = id
        self.role = role
        self.exp = exp
        self.nbf = nbf
        self.aud = aud
        self.iss = iss
        holdsPublisherClaim = role == "publisher"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        sub = try? container.decodeIfPresent(FlexibleID.self, forKey: .sub)
        user = try? container.decodeIfPresent(UserClaim.self, forKey: .user)
        id = try? container.decodeIfPresent(FlexibleID.self, forKey: .id)
        role = try? container.decodeIfPresent(String.self, forKey: .role)
        // A malformed exp or nbf must fail the token, not be skipped.
        exp = try container.decodeIfPresent(ExpirationClaim.self, forKey: .exp)
        nbf = try container.decodeIfPresent(NotBeforeClaim.self, forKey: .nbf)
        // A malformed aud or iss is absent, which fails a token only where they are checked.
        aud = try? container.decodeIfPresent(AudienceClaim.self, forKey: .aud)
        iss = try? container.decodeIfPresent(String.self, forKey: .iss)
        // The seed's rule reads the `role` decoded above: navigating the claims again costs the accept thread
        // microseconds per connection.
        if let rule = decoder.userInfo[PublisherClaim.userInfoKey] as? PublisherClaim {
            holdsPublisherClaim = rule.isHeld(by: decoder)
        } else {
            holdsPublisherClaim = role == PublisherClaim.role.value
        }
    }

    /// The user id: `sub`, else `user.id`, else `id`.
    public var userID: String? { (sub ?? user?.id ?? id)?.value }

    public func verify(using _: some JWTAlgorithm) throws {
        try exp?.verifyNotExpired()
        try nbf?.verifyNotBefore()
    }
}

/// An id claim that is a non-empty string or an integer.
public struct FlexibleID: Codable, Sendable, Equatable {
    public var value: String

    public init(_ value: String) { self.value = value }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let string = try? container.decode(String.self), !string.isEmpty {
            value = string
        } else if let integer = try? container.decode(Int64.self) {
            value = String(integer)
        } else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "an id must be a non-empty string or an integer")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(value)
    }
}
