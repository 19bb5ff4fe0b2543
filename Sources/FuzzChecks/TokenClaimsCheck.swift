import Crypto
import Foundation
import ExtrasBase64
import Shared

/// Verifies a token made of the input. First byte 0: the rest is the token as a client sends it (header, signature
/// and all). Any other first byte: the rest is the claims segment (JSON) of a token signed with the verifier's
/// secret, so that the claims are decoded (a random signature never matches). A crash is a finding, and so is
/// `FlatClaimsReader` reading claims other than `JSONDecoder` reads from the same JSON.
enum TokenClaimsCheck {
    static let secret = "fuzz-secret-fuzz-secret-fuzz-secret-0123"
    static let verifier = TokenVerifier(secret: secret)
    private static let key = SymmetricKey(data: Array(secret.utf8))
    private static let header = base64URL(Array(#"{"alg":"HS256","typ":"JWT"}"#.utf8))

    static func check(_ input: UnsafeRawBufferPointer) -> Finding? {
        guard let mode = input.first else { return nil }
        let rest = input.dropFirst()
        let token = mode == 0 ? String(decoding: rest, as: UTF8.self) : signedToken(claims: rest)
        _ = verifier.verify(token)
        return mode == 0 ? nil : flatReaderAgrees(json: Array(rest))
    }

    /// Where `FlatClaimsReader` reads claims, `JSONDecoder` must read the same ones (the reader replaces it then).
    static func flatReaderAgrees(json: [UInt8]) -> Finding? {
        guard let flat = FlatClaimsReader.read(json) else { return nil }
        let decoded = try? TokenVerifier.claimsDecoder(publisherClaim: .role).decode(HubClaims.self, from: Data(json))
        guard decoded != flat else { return nil }
        return Finding("FlatClaimsReader read \(flat), JSONDecoder \(decoded.map { "\($0)" } ?? "an error")")
    }

    static func signedToken(claims: some Collection<UInt8>) -> String {
        let signingInput = header + "." + base64URL(claims)
        let mac = HMAC<SHA256>.authenticationCode(for: Array(signingInput.utf8), using: key)
        return signingInput + "." + base64URL(Array(mac))
    }

    private static func base64URL(_ bytes: some Collection<UInt8>) -> String {
        Base64.encodeToString(bytes: bytes, options: [.base64UrlAlphabet, .omitPaddingCharacter])
    }
}
