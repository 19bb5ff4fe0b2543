import Crypto
import CryptoExtras
import Foundation

/// One key a token's signature is checked with, bound to exactly one algorithm: a token is checked only with keys
/// of the algorithm its header names, so an HS256 token "signed" with an RSA public key as its secret finds no
/// HS256 key to be checked with (no algorithm confusion). The mathematics are swift-crypto's, synchronous, on the
/// thread that asks (the supervisor's accept thread).
public struct VerificationKey: Sendable {
    public let algorithm: JWSAlgorithm
    /// The JWK `kid` it was published under; nil for a secret or a PEM file (such a key serves any `kid`).
    public let keyID: String?
    /// Where it came from, for log lines: "secret", a PEM file's path, a JWKS file's path or URL.
    public let source: String
    private let material: Material

    private enum Material: Sendable {
        /// Keyed once: each verification copies it instead of hashing the secret again.
        case hmac(HMAC<SHA256>)
        case rsa(_RSA.Signing.PublicKey)
        case p256(P256.Signing.PublicKey)
        case p384(P384.Signing.PublicKey)
        case ed25519(Curve25519.Signing.PublicKey)
    }

    /// Why a key could not be made; the description names the source and reads well in a log line.
    public struct Invalid: Error, CustomStringConvertible {
        public let description: String
        public init(_ description: String) { self.description = description }
    }

    /// The HS256 secret.
    public init(secret: String) {
        algorithm = .hs256
        keyID = nil
        source = "secret"
        material = .hmac(HMAC<SHA256>(key: SymmetricKey(data: Data(secret.utf8))))
    }

    private init(algorithm: JWSAlgorithm, keyID: String?, source: String, material: Material) {
        self.algorithm = algorithm
        self.keyID = keyID
        self.source = source
        self.material = material
    }

    /// A public key in PEM (`-----BEGIN PUBLIC KEY-----`, SubjectPublicKeyInfo). An EC or Ed25519 key implies its
    /// algorithm; an RSA key does not (RS256, RS384, RS512 and PS256 all use one), so it must be given.
    public init(pem: String, algorithm: JWSAlgorithm?, source: String) throws(Invalid) {
        if let rsa = try? _RSA.Signing.PublicKey(pemRepresentation: pem) {
            guard let algorithm, algorithm.isRSA else {
                throw Invalid("\(source): an RSA key needs its algorithm: RS256:\(source), RS384:, RS512: or PS256:")
            }
            self.init(algorithm: algorithm, keyID: nil, source: source, material: .rsa(rsa))
        } else if let key = try? P256.Signing.PublicKey(pemRepresentation: pem) {
            self.init(algorithm: try Self.implied(.es256, given: algorithm, source: source), keyID: nil, source: source, material: .p256(key))
        } else if let key = try? P384.Signing.PublicKey(pemRepresentation: pem) {
            self.init(algorithm: try Self.implied(.es384, given: algorithm, source: source), keyID: nil, source: source, material: .p384(key))
        } else if let key = try? Curve25519.Signing.PublicKey(pemRepresentation: pem) {
            self.init(algorithm: try Self.implied(.edDSA, given: algorithm, source: source), keyID: nil, source: source, material: .ed25519(key))
        } else {
            throw Invalid("\(source): not a PEM public key sse-hub can use (RSA of 2048 bits or more, EC P-256 or P-384, or Ed25519)")
        }
    }

    private static func implied(_ implied: JWSAlgorithm, given: JWSAlgorithm?, source: String) throws(Invalid) -> JWSAlgorithm {
        guard given == nil || given == implied else {
            throw Invalid("\(source): the key is for \(implied.rawValue), not \(given!.rawValue)")
        }
        return implied
    }

    /// A key from a JWKS document's entry. `alg` binds it; without one, an RSA key is RS256 (what identity providers
    /// publish), an EC key follows its curve and an OKP key is EdDSA.
    public init(jwk: JSONWebKey, source: String) throws(Invalid) {
        let named = jwk.alg.map { JWSAlgorithm(rawValue: $0) }
        if case .some(nil) = named { throw Invalid("alg \(jwk.alg!) is not supported") }
        let algorithm = named ?? nil
        func bytes(_ field: String?, _ name: String) throws(Invalid) -> [UInt8] {
            guard let field, let decoded = Base64URL.decode(field), !decoded.isEmpty else { throw Invalid("\(jwk.kty) key without a valid \(name)") }
            return decoded
        }
        switch jwk.kty {
        case "RSA":
            let algorithm = algorithm ?? .rs256
            guard algorithm.isRSA else { throw Invalid("an RSA key cannot be \(algorithm.rawValue)") }
            let key: _RSA.Signing.PublicKey
            do {
                key = try _RSA.Signing.PublicKey(n: try bytes(jwk.n, "n"), e: try bytes(jwk.e, "e"))
            } catch let error as Invalid {
                throw error
            } catch {
                throw Invalid("RSA key rejected: \(error)")
            }
            guard key.keySizeInBits >= 2048 else { throw Invalid("RSA key of \(key.keySizeInBits) bits (2048 at least)") }
            self.init(algorithm: algorithm, keyID: jwk.kid, source: source, material: .rsa(key))
        case "EC":
            let point = [0x04] + (try bytes(jwk.x, "x")) + (try bytes(jwk.y, "y"))
            switch (jwk.crv, algorithm) {
            case ("P-256", nil), ("P-256", .es256?):
                guard let key = try? P256.Signing.PublicKey(x963Representation: point) else { throw Invalid("not a P-256 point") }
                self.init(algorithm: .es256, keyID: jwk.kid, source: source, material: .p256(key))
            case ("P-384", nil), ("P-384", .es384?):
                guard let key = try? P384.Signing.PublicKey(x963Representation: point) else { throw Invalid("not a P-384 point") }
                self.init(algorithm: .es384, keyID: jwk.kid, source: source, material: .p384(key))
            default:
                throw Invalid("EC key of curve \(jwk.crv ?? "none") with alg \(jwk.alg ?? "none") is not supported")
            }
        case "OKP":
            guard jwk.crv == "Ed25519", algorithm == nil || algorithm == .edDSA else {
                throw Invalid("OKP key of curve \(jwk.crv ?? "none") with alg \(jwk.alg ?? "none") is not supported")
            }
            guard let key = try? Curve25519.Signing.PublicKey(rawRepresentation: try bytes(jwk.x, "x")) else { throw Invalid("not an Ed25519 key") }
            self.init(algorithm: .edDSA, keyID: jwk.kid, source: source, material: .ed25519(key))
        default:
            throw Invalid("key type \(jwk.kty) is not supported")
        }
    }

    /// Whether `signature` (the token's third segment, decoded) signs `signingInput` (its first two segments and
    /// the dot between them) under this key.
    public func isValidSignature(_ signature: [UInt8], for signingInput: ArraySlice<UInt8>) -> Bool {
        switch material {
        case .hmac(let keyed):
            var mac = keyed
            mac.update(data: signingInput)
            // `==` between an authentication code and bytes is swift-crypto's constant-time comparison.
            return mac.finalize() == signature
        case .rsa(let key):
            let signature = _RSA.Signing.RSASignature(rawRepresentation: signature)
            switch algorithm {
            case .rs256: return key.isValidSignature(signature, for: SHA256.hash(data: signingInput), padding: .insecurePKCS1v1_5)
            case .rs384: return key.isValidSignature(signature, for: SHA384.hash(data: signingInput), padding: .insecurePKCS1v1_5)
            case .rs512: return key.isValidSignature(signature, for: SHA512.hash(data: signingInput), padding: .insecurePKCS1v1_5)
            case .ps256: return key.isValidSignature(signature, for: SHA256.hash(data: signingInput), padding: .PSS)
            default: preconditionFailure("an RSA key bound to \(algorithm)")
            }
        case .p256(let key):
            // JWS carries ECDSA signatures as r‖s, which is swift-crypto's raw representation.
            guard let signature = try? P256.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
            return key.isValidSignature(signature, for: signingInput)
        case .p384(let key):
            guard let signature = try? P384.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
            return key.isValidSignature(signature, for: signingInput)
        case .ed25519(let key):
            return key.isValidSignature(signature, for: signingInput)
        }
    }
}
