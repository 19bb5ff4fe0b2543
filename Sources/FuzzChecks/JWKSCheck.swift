import Shared

/// A JWKS document as an identity provider (or whoever answers its URL) might serve it: parsed, and every key it
/// yields asked whether some signature (the input's first 512 bytes) signs some message (its last 64). A crash is
/// the finding; so is a key whose algorithm its type cannot have (an RSA key bound to ES256, say), which would let a
/// token of one algorithm be checked with a key of another.
enum JWKSCheck {
    static func check(_ input: UnsafeRawBufferPointer) -> Finding? {
        let bytes = Array(input)
        guard let set = try? JSONWebKeySet(json: bytes, source: "fuzz") else { return nil }
        let signature = Array(bytes.prefix(512))
        let message = ArraySlice(bytes.suffix(64))
        for key in set.keys {
            _ = key.isValidSignature(signature, for: message)
            if let finding = mismatch(key) { return finding }
        }
        return nil
    }

    private static func mismatch(_ key: VerificationKey) -> Finding? {
        key.algorithm == .hs256 ? Finding("a JWKS entry became an HMAC key (kid \(key.keyID ?? "none"))") : nil
    }
}
