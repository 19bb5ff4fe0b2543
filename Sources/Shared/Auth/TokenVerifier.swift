import Crypto
import ExtrasBase64
import Foundation
import JWTKit

/// Who a verified token speaks for.
public struct Identity: Sendable, Equatable {
    public var userID: String?
    public var isPublisher: Bool
    /// `exp` in seconds since 1970, if the token has one.
    public var expiresAt: Int64?
}

/// Why a request was refused; `status` and `message` go into the JSON error body.
public struct AuthFailure: Error, Sendable, Equatable {
    public enum Code: String, Sendable {
        case missingToken = "auth.missing-token"
        case invalidToken = "auth.invalid-token"
        case noUser = "auth.no-user"
        case userIDTooLong = "auth.user-id-too-long"
        case notPublisher = "auth.not-publisher"
    }

    /// Why a token is invalid: for the operator's log line, never for the client (which learns only that it is).
    public enum Reason: String, Sendable {
        case malformed, algorithm, unknownKey = "unknown-key", signature, claims, expired
        case notYetValid = "not-yet-valid", audience, issuer
    }

    public let code: Code
    public let reason: Reason?

    public init(code: Code, reason: Reason? = nil) {
        self.code = code
        self.reason = reason
    }

    static func invalid(_ reason: Reason) -> AuthFailure { AuthFailure(code: .invalidToken, reason: reason) }

    /// Two failures are alike when the client would be told alike: the reason is the log's.
    public static func == (lhs: AuthFailure, rhs: AuthFailure) -> Bool { lhs.code == rhs.code }

    public var status: Int { code == .notPublisher ? 403 : 401 }

    public var message: String {
        switch code {
        case .missingToken: "No token, authorization denied"
        case .invalidToken: "Token is not valid"
        case .noUser: "Token names no user (sub, user.id or id)"
        case .userIDTooLong: "Token's user id is over \(Handoff.maximumUserIDBytes) bytes"
        case .notPublisher: "A publisher token is required"
        }
    }
}

/// Verifies JWTs, synchronously, on the thread that asks (the supervisor's accept thread, with no hop).
///
/// The pieces are jwt-kit's and its dependencies': the claim types and its decoder settings (jwt-kit), base64url
/// (swift-extras-base64, what jwt-kit decodes with) and the signatures (swift-crypto, `VerificationKey`). They are
/// composed here rather than through `JWTKeyCollection.verify` because that is an actor method: on the accept
/// thread it cost two thread hops per connection, and its generic `JWTHeader` decoding another quarter of the
/// hand-off's CPU (measured with `perf`). The header is read for `alg` and `kid` only; a token is checked with the
/// keys bound to its `alg` (and its `kid`, when it names one and a key was published under it), and its claims are
/// decoded only once a signature holds.
public struct TokenVerifier: Sendable {
    public let keys: KeyRing
    public let rules: ClaimRules

    public init(keys: KeyRing, rules: ClaimRules = .seed) {
        self.keys = keys
        self.rules = rules
    }

    /// The seed's configuration: one HS256 secret, its claim rules.
    public init(secret: String) {
        self.init(keys: KeyRing(fixed: [VerificationKey(secret: secret)]))
    }

    /// The header segments issuers write for HS256, byte for byte (jwt-kit, jsonwebtoken, PyJWT): a token whose
    /// header is one of these needs no JSON decoding for it. Any other header is decoded.
    private static let knownHS256Headers: [[UInt8]] = [
        #"{"alg":"HS256","typ":"JWT"}"#, #"{"typ":"JWT","alg":"HS256"}"#, #"{"alg":"HS256"}"#,
    ].map { Base64.encodeToBytes(bytes: Array($0.utf8), options: [.base64UrlAlphabet, .omitPaddingCharacter]) }

    private struct Header: Decodable {
        var alg: String
        var kid: String?
        /// Extensions the token says must be understood (RFC 7515 §4.1.11): sse-hub understands none.
        var crit: JSONValue?
    }

    private static func header(_ segment: ArraySlice<UInt8>) -> Result<(JWSAlgorithm, keyID: String?), AuthFailure> {
        if knownHS256Headers.contains(where: { $0.elementsEqual(segment) }) { return .success((.hs256, nil)) }
        guard let header = decode(Header.self, from: segment, decoder: JSONDecoder()) else { return .failure(.invalid(.malformed)) }
        guard header.crit == nil, let algorithm = JWSAlgorithm(rawValue: header.alg) else { return .failure(.invalid(.algorithm)) }
        return .success((algorithm, header.kid))
    }

    /// Verifies signature, `alg`, `exp`, `nbf`, and the audience and issuer when the rules name them.
    public func verify(_ token: String) -> Result<Identity, AuthFailure> {
        let bytes = Array(token.utf8)
        let parts = bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 3, let signature = Base64URL.decode(bytes: parts[2]) else { return .failure(.invalid(.malformed)) }
        let algorithm: JWSAlgorithm
        let keyID: String?
        switch Self.header(parts[0]) {
        case .failure(let failure): return .failure(failure)
        case .success(let header): (algorithm, keyID) = header
        }
        let snapshot = keys.snapshot
        // A `kid` no key was published under: the keys without one may still hold, and a JWKS URL may have rotated.
        let keyIDKnown = keyID.map(snapshot.knows(keyID:)) ?? false
        if let keyID, !keyIDKnown { keys.noteUnknownKeyID(keyID) }
        let signingInput = bytes[..<parts[1].endIndex]
        var checked = false
        var signed = false
        for key in snapshot.keys where key.algorithm == algorithm && (key.keyID == nil || (keyIDKnown && key.keyID == keyID)) {
            checked = true
            if key.isValidSignature(signature, for: signingInput) {
                signed = true
                break
            }
        }
        guard checked else { return .failure(.invalid(.unknownKey)) }
        guard signed else { return .failure(.invalid(.signature)) }
        return identity(claimsSegment: parts[1])
    }

    private func identity(claimsSegment: ArraySlice<UInt8>) -> Result<Identity, AuthFailure> {
        guard let claims = claims(claimsSegment) else { return .failure(.invalid(.claims)) }
        let now = Date().timeIntervalSince1970
        let leeway = Double(rules.leewaySeconds)
        var expiresAt: Int64?
        if let exp = claims.exp {
            guard now < exp.value.timeIntervalSince1970 + leeway else { return .failure(.invalid(.expired)) }
            guard let seconds = Self.expirySeconds(exp.value) else { return .failure(.invalid(.claims)) }
            // The moment the token stops being accepted, which is when a stream it opened ends.
            expiresAt = seconds + rules.leewaySeconds
        }
        if let nbf = claims.nbf, now + leeway < nbf.value.timeIntervalSince1970 { return .failure(.invalid(.notYetValid)) }
        if !rules.audiences.isEmpty {
            guard let audience = claims.aud?.value, audience.contains(where: rules.audiences.contains) else {
                return .failure(.invalid(.audience))
            }
        }
        if !rules.issuers.isEmpty {
            guard let issuer = claims.iss, rules.issuers.contains(issuer) else { return .failure(.invalid(.issuer)) }
        }
        return .success(Identity(userID: claims.userID, isPublisher: claims.holdsPublisherClaim, expiresAt: expiresAt))
    }

    /// The claims segment decoded: by `FlatClaimsReader` when it can (the usual token, with the default publisher
    /// claim), else by `JSONDecoder`.
    private func claims(_ segment: ArraySlice<UInt8>) -> HubClaims? {
        guard let json = Base64URL.decode(bytes: segment) else { return nil }
        if rules.publisherClaim == .role, let claims = FlatClaimsReader.read(json) { return claims }
        return try? Self.claimsDecoder(publisherClaim: rules.publisherClaim).decode(HubClaims.self, from: Data(json))
    }

    /// The decoder of claims `HubClaims(from:)` expects: `exp` and `nbf` in seconds, and the publisher claim to look for.
    public static func claimsDecoder(publisherClaim: PublisherClaim) -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .secondsSince1970
        // Without one, the claims read the seed's `role` (setting user info costs the accept thread a copy per token).
        if publisherClaim != .role { decoder.userInfo[PublisherClaim.userInfoKey] = publisherClaim }
        return decoder
    }

    /// The latest `exp` accepted: 9999-12-31T23:59:59Z. A signed token may carry any JSON number there
    /// (2^63, 1e300); one past this bound is refused like any invalid token rather than converted.
    public static let latestExpiry: Int64 = 253_402_300_799

    /// `exp` in whole seconds since 1970, or nil when it is past `latestExpiry` (or not a finite number).
    static func expirySeconds(_ date: Date) -> Int64? {
        guard let seconds = Int64(exactly: date.timeIntervalSince1970.rounded(.down)), seconds <= latestExpiry else { return nil }
        return seconds
    }

    /// A base64url segment of the token, decoded as JSON.
    private static func decode<T: Decodable>(_ type: T.Type, from segment: ArraySlice<UInt8>, decoder: JSONDecoder) -> T? {
        guard let json = Base64URL.decode(bytes: segment) else { return nil }
        return try? decoder.decode(T.self, from: Data(json))
    }

    /// A user's identity, or why there is none.
    public func verifyUser(_ token: String?) -> Result<Identity, AuthFailure> {
        guard let token, !token.isEmpty else { return .failure(AuthFailure(code: .missingToken)) }
        return verify(token).flatMap(Self.asUser)
    }

    /// A publisher's identity (the publisher claim, `"role":"publisher"` by default), or why there is none.
    public func verifyPublisher(_ token: String?) -> Result<Identity, AuthFailure> {
        guard let token, !token.isEmpty else { return .failure(AuthFailure(code: .missingToken)) }
        return verify(token).flatMap(Self.asPublisher)
    }

    /// A verified token's identity as a user's: it must name one, of a bounded length.
    public static func asUser(_ identity: Identity) -> Result<Identity, AuthFailure> {
        guard let userID = identity.userID else { return .failure(AuthFailure(code: .noUser)) }
        // Every user id travels in a hand-off, a log line and the stats: bounded here, once.
        guard userID.utf8.count <= Handoff.maximumUserIDBytes else { return .failure(AuthFailure(code: .userIDTooLong)) }
        return .success(identity)
    }

    /// A verified token's identity as a publisher's: it must hold the publisher claim.
    public static func asPublisher(_ identity: Identity) -> Result<Identity, AuthFailure> {
        identity.isPublisher ? .success(identity) : .failure(AuthFailure(code: .notPublisher))
    }
}

/// Signs tokens with the same secret, or an identity provider's private key: for tests, the load tool and
/// `sse-supervisor token` (trying the server by hand).
public struct TokenSigner: Sendable {
    private let keys: JWTKeyCollection

    public init(secret: String) async {
        keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
    }

    /// A private key in PEM: RS256 (RSA) or ES256 (EC P-256), as the load tool measures the supervisor's verification.
    public init(privateKeyPEM pem: String, algorithm: JWSAlgorithm) async throws {
        keys = JWTKeyCollection()
        switch algorithm {
        case .rs256: await keys.add(rsa: try Insecure.RSA.PrivateKey(pem: pem), digestAlgorithm: .sha256)
        case .es256: await keys.add(ecdsa: try ES256PrivateKey(pem: pem))
        default: throw VerificationKey.Invalid("the load tool signs with RS256 or ES256 keys, not \(algorithm.rawValue)")
        }
    }

    public func sign(_ claims: HubClaims) async throws -> String {
        try await keys.sign(claims)
    }

    /// A token for `userID` (as `sub`), valid for `lifetime` seconds, optionally with `"role":"publisher"`.
    public func sign(userID: String?, publisher: Bool = false, lifetime: TimeInterval = 3600) async throws -> String {
        try await sign(
            HubClaims(
                sub: userID.map(FlexibleID.init), role: publisher ? "publisher" : nil,
                exp: ExpirationClaim(value: Date().addingTimeInterval(lifetime))
            )
        )
    }
}
