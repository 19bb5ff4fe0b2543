import ExtrasBase64
import Foundation

/// One entry of a JWKS document (RFC 7517), with only the members sse-hub reads. Decoded leniently, key by key, so
/// one entry sse-hub cannot use (an encryption key, a curve it does not know) is skipped and logged rather than
/// failing the whole document.
public struct JSONWebKey: Decodable, Sendable, Equatable {
    public var kty: String
    public var kid: String?
    public var alg: String?
    public var use: String?
    public var crv: String?
    public var n: String?
    public var e: String?
    public var x: String?
    public var y: String?
}

/// A JWKS document's usable signing keys, and why each other entry was skipped. A document without one is invalid:
/// installing it would refuse every token, which is never what a rotation means.
public struct JSONWebKeySet: Sendable {
    public var keys: [VerificationKey]
    public var skipped: [String]

    public struct Invalid: Error, CustomStringConvertible {
        public let description: String
        public init(description: String) { self.description = description }
    }

    /// The most bytes a JWKS document may have (identity providers publish a few KiB).
    public static let maximumBytes = 1 << 20

    public init(json: some Collection<UInt8>, source: String) throws(Invalid) {
        guard json.count <= Self.maximumBytes else { throw Invalid(description: "\(source): over \(Self.maximumBytes) bytes") }
        let document: Document
        do {
            document = try JSONDecoder().decode(Document.self, from: Data(json))
        } catch {
            throw Invalid(description: "\(source): not a JWKS document ({\"keys\":[...]}): \(error)")
        }
        keys = []
        skipped = []
        for (index, entry) in document.keys.enumerated() {
            guard let jwk = entry.key else {
                skipped.append("key \(index): not a JWK")
                continue
            }
            let name = "key \(index)" + (jwk.kid.map { " (kid \($0))" } ?? "")
            if let use = jwk.use, use != "sig" {
                skipped.append("\(name): use \(use)")
                continue
            }
            do {
                keys.append(try VerificationKey(jwk: jwk, source: source))
            } catch {
                skipped.append("\(name): \(error.description)")
            }
        }
        guard !keys.isEmpty else {
            throw Invalid(description: "\(source): no usable signing key (\(skipped.joined(separator: "; ")))")
        }
    }
}

/// A JWKS document whose entries decode one by one: an entry that is not even a JWK (a number, an object without
/// `kty`) is skipped like any unusable one.
private struct Document: Decodable {
    struct Entry: Decodable {
        var key: JSONWebKey?
        init(from decoder: any Decoder) throws { key = try? JSONWebKey(from: decoder) }
    }
    var keys: [Entry]
}

/// base64url without padding (RFC 7515 §2), as JWS and JWK write their binary members.
public enum Base64URL {
    public static func decode(_ text: some StringProtocol) -> [UInt8]? {
        try? Base64.decode(bytes: Array(text.utf8), options: [.base64UrlAlphabet, .omitPaddingCharacter])
    }

    public static func decode(bytes: ArraySlice<UInt8>) -> [UInt8]? {
        try? Base64.decode(bytes: bytes, options: [.base64UrlAlphabet, .omitPaddingCharacter])
    }
}
