import Crypto
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
        case .notPublisher: "A publisher token is required"
        }
    }
}

/// Verifies HS256 JWTs, synchronously.
///
/// Decoding (base64url, JSON, claim types) is jwt-kit's `DefaultJWTParser`; the signature check is
/// swift-crypto's constant-time `HMAC<SHA256>.isValidAuthenticationCode`, the same primitive jwt-kit uses.
/// jwt-kit's own `JWTKeyCollection.verify` is an actor method: on the supervisor's accept thread it would cost
/// two thread hops per connection (measured: about half the supervisor's CPU per hand-off), so the steps are
/// composed here instead. Only HS256 is accepted: jwt-kit would check any header's token with the one key,
/// so the header's `alg` is checked too (`none` and the rest are refused).
public struct TokenVerifier: Sendable {
    public static let algorithm = "HS256"
    private let key: SymmetricKey
    private let parser = DefaultJWTParser()

    public init(secret: String) {
        key = SymmetricKey(data: Data(secret.utf8))
    }

    /// Verifies signature, `alg`, `exp` and `nbf`.
    public func verify(_ token: String) -> Result<Identity, AuthFailure> {
        let bytes = Array(token.utf8)
        guard let secondPeriod = bytes.indices.filter({ bytes[$0] == UInt8(ascii: ".") }).dropFirst().first,
            let (header, claims, signature) = try? parser.parse(bytes, as: HubClaims.self),
            header.alg == Self.algorithm,
            HMAC<SHA256>.isValidAuthenticationCode(signature, authenticating: bytes[..<secondPeriod], using: key)
        else { return .failure(AuthFailure(code: .invalidToken)) }
        do {
            try claims.exp?.verifyNotExpired()
            try claims.nbf?.verifyNotBefore()
        } catch {
            return .failure(AuthFailure(code: .invalidToken))
        }
        return .success(
            Identity(
                userID: claims.userID,
                isPublisher: claims.role == "publisher",
                expiresAt: claims.exp.map { Int64($0.value.timeIntervalSince1970.rounded(.down)) }
            )
        )
    }

    /// A user's identity, or why there is none.
    public func verifyUser(_ token: String?) -> Result<Identity, AuthFailure> {
        guard let token, !token.isEmpty else { return .failure(AuthFailure(code: .missingToken)) }
        return verify(token).flatMap { identity in
            identity.userID == nil ? .failure(AuthFailure(code: .noUser)) : .success(identity)
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
