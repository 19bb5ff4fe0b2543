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
    public let code: Code

    public init(code: Code) { self.code = code }

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

/// Verifies HS256 JWTs, synchronously, on the thread that asks.
///
/// The pieces are jwt-kit's and its dependencies': the claim types and `JWTJSONDecoder.defaultForJWT`
/// (jwt-kit), base64url (swift-extras-base64, what jwt-kit decodes with) and a constant-time HMAC-SHA256
/// comparison (swift-crypto). They are composed here rather than through `JWTKeyCollection.verify` because
/// that is an actor method: on the supervisor's accept thread it cost two thread hops per connection, and its
/// generic `JWTHeader` decoding another quarter of the hand-off's CPU (measured with `perf`). The header is
/// read only for `alg`, and only HS256 is accepted (`none` and the rest are refused); the signature is checked
/// before the claims are decoded.
public struct TokenVerifier: Sendable {
    public static let algorithm = "HS256"
    /// HMAC keyed once: each verification copies it instead of hashing the key again.
    private let keyedMAC: HMAC<SHA256>

    public init(secret: String) {
        keyedMAC = HMAC<SHA256>(key: SymmetricKey(data: Data(secret.utf8)))
    }

    /// The header segments issuers write for HS256, byte for byte (jwt-kit, jsonwebtoken, PyJWT): a token
    /// whose header is one of these needs no JSON decoding for it. Any other header is decoded.
    private static let knownHS256Headers: [[UInt8]] = [
        #"{"alg":"HS256","typ":"JWT"}"#, #"{"typ":"JWT","alg":"HS256"}"#, #"{"alg":"HS256"}"#,
    ].map { Base64.encodeToBytes(bytes: Array($0.utf8), options: [.base64UrlAlphabet, .omitPaddingCharacter]) }

    private static func isHS256(header segment: ArraySlice<UInt8>) -> Bool {
        if knownHS256Headers.contains(where: { $0.elementsEqual(segment) }) { return true }
        return decode(AlgorithmHeader.self, from: segment)?.alg == algorithm
    }

    private struct AlgorithmHeader: Decodable {
        var alg: String
    }

    /// Verifies signature, `alg`, `exp` and `nbf`.
    public func verify(_ token: String) -> Result<Identity, AuthFailure> {
        let invalid = Result<Identity, AuthFailure>.failure(AuthFailure(code: .invalidToken))
        let bytes = Array(token.utf8)
        let parts = bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 3, Self.isHS256(header: parts[0]),
            let signature = try? Base64.decode(bytes: parts[2], options: [.base64UrlAlphabet, .omitPaddingCharacter])
        else { return invalid }
        var mac = keyedMAC
        mac.update(data: bytes[..<parts[1].endIndex])
        // `==` between an authentication code and bytes is swift-crypto's constant-time comparison.
        guard mac.finalize() == signature, let claims = Self.decode(HubClaims.self, from: parts[1]) else { return invalid }
        do {
            try claims.exp?.verifyNotExpired()
            try claims.nbf?.verifyNotBefore()
        } catch {
            return invalid
        }
        var expiresAt: Int64?
        if let exp = claims.exp {
            guard let seconds = Self.expirySeconds(exp.value) else { return invalid }
            expiresAt = seconds
        }
        return .success(Identity(userID: claims.userID, isPublisher: claims.role == "publisher", expiresAt: expiresAt))
    }

    /// The latest `exp` accepted: 9999-12-31T23:59:59Z. A signed token may carry any JSON number there
    /// (2^63, 1e300); one past this bound is refused like any invalid token rather than converted.
    public static let latestExpiry: Int64 = 253_402_300_799

    /// `exp` in whole seconds since 1970, or nil when it is past `latestExpiry` (or not a finite number).
    static func expirySeconds(_ date: Date) -> Int64? {
        guard let seconds = Int64(exactly: date.timeIntervalSince1970.rounded(.down)), seconds <= latestExpiry else { return nil }
        return seconds
    }

    /// A base64url segment of the token, decoded as JSON with jwt-kit's decoder settings (dates in seconds).
    private static func decode<T: Decodable>(_ type: T.Type, from segment: ArraySlice<UInt8>) -> T? {
        guard let json = try? Base64.decode(bytes: segment, options: [.base64UrlAlphabet, .omitPaddingCharacter]) else {
            return nil
        }
        let decoder: any JWTJSONDecoder = .defaultForJWT
        return try? decoder.decode(T.self, from: Data(json))
    }

    /// A user's identity, or why there is none.
    public func verifyUser(_ token: String?) -> Result<Identity, AuthFailure> {
        guard let token, !token.isEmpty else { return .failure(AuthFailure(code: .missingToken)) }
        return verify(token).flatMap { identity in
            guard let userID = identity.userID else { return .failure(AuthFailure(code: .noUser)) }
            // Every user id travels in a hand-off, a log line and the stats: bounded here, once.
            guard userID.utf8.count <= Handoff.maximumUserIDBytes else { return .failure(AuthFailure(code: .userIDTooLong)) }
            return .success(identity)
        }
    }

    /// A publisher's identity (`"role":"publisher"`), or why there is none.
    public func verifyPublisher(_ token: String?) -> Result<Identity, AuthFailure> {
        guard let token, !token.isEmpty else { return .failure(AuthFailure(code: .missingToken)) }
        return verify(token).flatMap { identity in
            identity.isPublisher ? .success(identity) : .failure(AuthFailure(code: .notPublisher))
        }
    }
}

/// Signs tokens with the same secret: for tests, the load tool and `sse-supervisor token` (trying the server by hand).
public struct TokenSigner: Sendable {
    private let keys: JWTKeyCollection

    public init(secret: String) async {
        keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
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
