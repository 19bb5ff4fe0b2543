import Crypto
import ExtrasBase64
import Foundation
import JWTKit
import Shared
import Testing

@Suite struct TokenVerifierTests {
    static let secret = "unit-test-secret-unit-test-secret-0123"

    func verifier() -> TokenVerifier { TokenVerifier(secret: Self.secret) }
    func signer(_ secret: String = secret) async -> JWTKeyCollection {
        await JWTKeyCollection().add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
    }

    struct RawClaims: JWTPayload {
        var fields: [String: JSONValue]
        init(_ fields: [String: JSONValue]) { self.fields = fields }
        init(from decoder: any Decoder) throws { fields = try [String: JSONValue](from: decoder) }
        func encode(to encoder: any Encoder) throws { try fields.encode(to: encoder) }
        func verify(using algorithm: some JWTAlgorithm) throws {}
    }

    func sign(_ fields: [String: JSONValue], secret: String = secret, alg: String? = nil) async throws -> String {
        var header = JWTHeader()
        if let alg { header.alg = alg }
        return try await signer(secret).sign(RawClaims(fields), header: header)
    }

    var hourFromNow: JSONValue { .integer(Int64(Date().timeIntervalSince1970) + 3600) }

    @Test func userIDComesFromSubThenUserIDThenID() async throws {
        let verifier = verifier()
        let cases: [([String: JSONValue], String)] = [
            (["sub": .string("s1"), "user": .object(["id": .string("u1")]), "id": .string("i1")], "s1"),
            (["user": .object(["id": .string("u1")]), "id": .string("i1")], "u1"),
            (["id": .string("i1")], "i1"),
            (["id": .integer(42)], "42"),
            (["user": .object(["id": .integer(7)])], "7"),
        ]
        for (claims, expected) in cases {
            let identity = try verifier.verifyUser(try await sign(claims.merging(["exp": hourFromNow]) { $1 })).get()
            #expect(identity.userID == expected)
            #expect(!identity.isPublisher)
        }
    }

    @Test func publisherRoleAndExpiryAreRead() async throws {
        let exp = Int64(Date().timeIntervalSince1970) + 3600
        let token = try await sign(["sub": .string("backend"), "role": .string("publisher"), "exp": .integer(exp)])
        let identity = try verifier().verifyPublisher(token).get()
        #expect(identity.isPublisher)
        #expect(identity.expiresAt == exp)
    }

    /// A token signed by hand, with exactly this header text (issuers differ in key order and extra fields).
    func token(header: String, claims: String, secret: String = secret) -> String {
        func base64URL(_ bytes: some Collection<UInt8>) -> String {
            Base64.encodeToString(bytes: bytes, options: [.base64UrlAlphabet, .omitPaddingCharacter])
        }
        let signingInput = base64URL(Array(header.utf8)) + "." + base64URL(Array(claims.utf8))
        let signature = HMAC<SHA256>.authenticationCode(for: Data(signingInput.utf8), using: SymmetricKey(data: Data(secret.utf8)))
        return signingInput + "." + base64URL(Array(signature))
    }

    @Test func anyHS256HeaderVerifiesAndNoOtherDoes() throws {
        let verifier = verifier()
        let hs256 = [
            #"{"alg":"HS256","typ":"JWT"}"#, #"{"typ":"JWT","alg":"HS256"}"#, #"{"alg":"HS256"}"#,
            #"{"kid":"k1","alg":"HS256","typ":"JWT"}"#, #"{ "alg" : "HS256" }"#,
        ]
        for header in hs256 {
            #expect(try verifier.verifyUser(token(header: header, claims: #"{"sub":"n1"}"#)).get().userID == "n1", "\(header)")
        }
        for header in [#"{"alg":"HS384","typ":"JWT"}"#, #"{"alg":"none","typ":"JWT"}"#, #"{"typ":"JWT"}"#, "not json", "{}"] {
            #expect(throws: AuthFailure(code: .invalidToken), "\(header)") {
                try verifier.verifyUser(token(header: header, claims: #"{"sub":"n1"}"#)).get()
            }
        }
    }

    @Test func everyRejection() async throws {
        let verifier = verifier()
        let past = JSONValue.integer(Int64(Date().timeIntervalSince1970) - 10)
        func code(_ result: Result<Identity, AuthFailure>) -> AuthFailure.Code? {
            if case .failure(let failure) = result { return failure.code }
            return nil
        }
        #expect(code(verifier.verifyUser(nil)) == .missingToken)
        #expect(code(verifier.verifyUser("")) == .missingToken)
        #expect(code(verifier.verifyUser("not.a.jwt")) == .invalidToken)
        #expect(code(verifier.verifyUser("onlyonepart")) == .invalidToken)
        #expect(code(verifier.verifyUser(try await sign(["sub": .string("a"), "exp": past]))) == .invalidToken)
        #expect(code(verifier.verifyUser(try await sign(["sub": .string("a"), "nbf": hourFromNow]))) == .invalidToken)
        #expect(code(verifier.verifyUser(try await sign(["sub": .string("a"), "exp": .string("soon")]))) == .invalidToken)
        #expect(code(verifier.verifyUser(try await sign(["sub": .string("a")], secret: "wrong-secret-wrong-secret-wrong-0123"))) == .invalidToken)
        #expect(code(verifier.verifyUser(try await sign(["sub": .string("a")], alg: "HS512"))) == .invalidToken)
        #expect(code(verifier.verifyUser(try await sign(["sub": .string("a")], alg: "none"))) == .invalidToken)
        // alg none with no signature at all.
        let valid = try await sign(["sub": .string("a")])
        let unsigned = valid.split(separator: ".").prefix(2).joined(separator: ".") + "."
        #expect(code(verifier.verifyUser(unsigned)) == .invalidToken)
        // A tampered payload.
        let parts = valid.split(separator: ".")
        let tampered = [parts[0], Substring(try await sign(["sub": .string("admin")]).split(separator: ".")[1]), parts[2]].joined(separator: ".")
        #expect(code(verifier.verifyUser(tampered)) == .invalidToken)
        #expect(code(verifier.verifyUser(try await sign(["role": .string("publisher")]))) == .noUser)
        #expect(code(verifier.verifyUser(try await sign(["sub": .string("")]))) == .noUser)
        #expect(code(verifier.verifyUser(try await sign(["id": .number(1.5)]))) == .noUser)
        #expect(code(verifier.verifyPublisher(try await sign(["sub": .string("a")]))) == .notPublisher)
        #expect(code(verifier.verifyPublisher(try await sign(["sub": .string("a"), "role": .string("admin")]))) == .notPublisher)
    }

    /// A validly signed token may put any JSON number in `exp` or `nbf`: found as a supervisor trap (2^63, 1e300).
    /// Each must be a clean refusal (or, for an `nbf` in the past, no obstacle), never a crash.
    @Test func numbersThatDoNotFitAreRefusedNotTrappedOn() throws {
        let verifier = verifier()
        let header = #"{"alg":"HS256","typ":"JWT"}"#
        for exp in ["9223372036854775808", "9223372036854775807", "1e300", "1.7976931348623157e308", "18446744073709551616",
            "253402300800", "1e19"]
        {
            #expect(throws: AuthFailure(code: .invalidToken), "exp \(exp)") {
                try verifier.verifyUser(token(header: header, claims: #"{"sub":"n1","exp":\#(exp)}"#)).get()
            }
        }
        for exp in ["-1e300", "-9223372036854775809", "1e400", "-1e400"] {
            #expect(throws: AuthFailure(code: .invalidToken), "exp \(exp)") {
                try verifier.verifyUser(token(header: header, claims: #"{"sub":"n1","exp":\#(exp)}"#)).get()
            }
        }
        // The last second accepted, and a fractional exp, are read down to whole seconds.
        #expect(try verifier.verifyUser(token(header: header, claims: #"{"sub":"n1","exp":253402300799}"#)).get().expiresAt == TokenVerifier.latestExpiry)
        #expect(try verifier.verifyUser(token(header: header, claims: #"{"sub":"n1","exp":253402300799.9}"#)).get().expiresAt == TokenVerifier.latestExpiry)
        // nbf far in the past is no obstacle; far in the future (or past any date) is not valid yet.
        #expect(try verifier.verifyUser(token(header: header, claims: #"{"sub":"n1","nbf":-1e300}"#)).get().userID == "n1")
        for nbf in ["1e300", "9223372036854775808", "1e400"] {
            #expect(throws: AuthFailure(code: .invalidToken), "nbf \(nbf)") {
                try verifier.verifyUser(token(header: header, claims: #"{"sub":"n1","nbf":\#(nbf)}"#)).get()
            }
        }
        // Ids that do not fit an integer are no user, not a crash.
        for id in ["9223372036854775808", "1e300", "-1e300", "1.5"] {
            #expect(throws: AuthFailure(code: .noUser), "sub \(id)") {
                try verifier.verifyUser(token(header: header, claims: #"{"sub":\#(id)}"#)).get()
            }
        }
        let longID = String(repeating: "u", count: Handoff.maximumUserIDBytes + 1)
        #expect(throws: AuthFailure(code: .userIDTooLong)) {
            try verifier.verifyUser(token(header: header, claims: #"{"sub":"\#(longID)"}"#)).get()
        }
    }

    @Test func statusesAndMessagesMatchTheReplacedService() {
        #expect(AuthFailure(code: .missingToken).status == 401)
        #expect(AuthFailure(code: .missingToken).message == "No token, authorization denied")
        #expect(AuthFailure(code: .invalidToken).message == "Token is not valid")
        #expect(AuthFailure(code: .notPublisher).status == 403)
    }

    @Test func tokenLocations() {
        #expect(TokenLocation.token(target: "/s?token=abc", authorization: "Bearer def", xAuthToken: "ghi") == "abc")
        #expect(TokenLocation.token(target: "/s", authorization: "Bearer def", xAuthToken: "ghi") == "def")
        #expect(TokenLocation.token(target: "/s", authorization: "Basic xyz", xAuthToken: "ghi") == "ghi")
        // Spaces and tabs around a token are HTTP's optional whitespace; a blank one falls through to the next place.
        #expect(TokenLocation.token(target: "/s", authorization: "Bearer \t def\t ", xAuthToken: "ghi") == "def")
        #expect(TokenLocation.token(target: "/s", authorization: "Bearer  \t ", xAuthToken: "\t ghi ") == "ghi")
        #expect(TokenLocation.token(target: "/s", authorization: "Bearer", xAuthToken: "  ") == nil)
        #expect(TokenLocation.token(target: "/s", authorization: "Bearer d e", xAuthToken: nil) == "d e")
        #expect(TokenLocation.token(target: "/s?token=a%2Eb", authorization: nil, xAuthToken: nil) == "a.b")
        #expect(TokenLocation.token(target: "/s?other=1", authorization: nil, xAuthToken: nil) == nil)
        #expect(TokenLocation.token(target: "/s?tokens=1&token=x&token=y", authorization: nil, xAuthToken: nil) == "x")
        #expect(TokenLocation.queryValue("lastEventId", in: "/s?token=a&lastEventId=12-3") == "12-3")
        #expect(TokenLocation.queryValue("flag", in: "/s?flag") == "")
        #expect(TokenLocation.queryValue("q", in: "/s?q=a+b%20c") == "a b c")
        #expect(TokenLocation.queryValue("q", in: "/s?q=&q=2") == "")
        #expect(TokenLocation.queryValue("q", in: "/s?&&q=é&") == "é")
        #expect(TokenLocation.queryValue("q", in: "/s?") == nil)
        #expect(TokenLocation.queryValue("q", in: "/s?qq=1&=q") == nil)
        #expect(TokenLocation.queryValue("q", in: "/s?q=%zz") == nil, "bad percent-encoding reads as absent")
        #expect(TokenLocation.queryValue("ü", in: "/s?a=1&ü=2") == "2")
    }

    @Test func secretSources() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("secret-\(UUID().uuidString)")
        try "from-file\n".write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        #expect(try JWTSecret.load(file: file.path, environment: ["SSE_JWT_SECRET": "env"]) == "from-file")
        #expect(try JWTSecret.load(file: nil, environment: ["SSE_JWT_SECRET": "env"]) == "env")
        let credentials = file.deletingLastPathComponent().appendingPathComponent("creds-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: credentials, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: credentials) }
        try "from-credential".write(to: credentials.appendingPathComponent("jwt-secret"), atomically: true, encoding: .utf8)
        #expect(try JWTSecret.load(file: nil, environment: ["CREDENTIALS_DIRECTORY": credentials.path]) == "from-credential")
        #expect(throws: JWTSecret.Missing.self) { try JWTSecret.load(file: nil, environment: [:]) }
        #expect(throws: JWTSecret.Missing.self) { try JWTSecret.load(file: "/nonexistent/secret", environment: [:]) }
    }
}

/// The claim rules' pieces that the integration tests reach only through a running supervisor.
@Suite struct ClaimRulesTests {
    @Test func aPublisherClaimIsADottedPathAndAValue() {
        #expect(PublisherClaim("role=publisher") == .role)
        #expect(PublisherClaim("realm_access.roles=sse-publisher")?.path == ["realm_access", "roles"])
        #expect(PublisherClaim("a.b=x=y")?.value == "x=y")
        for bad in ["role", "=publisher", "role=", "a..b=x", ".a=x"] { #expect(PublisherClaim(bad) == nil, "\(bad)") }
    }

    @Test func aJWKSDocumentKeepsWhatItCanUseAndSaysWhyItSkippedTheRest() throws {
        let json = #"""
            {"keys":[
              {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"ed"},
              {"kty":"RSA","n":"AQAB","e":"AQAB","kid":"tiny"},
              {"kty":"oct","k":"c2VjcmV0","kid":"hmac"},
              {"kty":"EC","crv":"P-521","x":"AA","y":"AA","kid":"p521"},
              {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","use":"enc","kid":"enc"},
              42
            ]}
            """#
        let set = try JSONWebKeySet(json: Array(json.utf8), source: "test")
        #expect(set.keys.map(\.keyID) == ["ed"])
        #expect(set.keys.first?.algorithm == .edDSA)
        #expect(set.skipped.count == 5, "\(set.skipped)")
        #expect(throws: JSONWebKeySet.Invalid.self) { try JSONWebKeySet(json: Array(#"{"keys":[]}"#.utf8), source: "empty") }
        #expect(throws: JSONWebKeySet.Invalid.self) { try JSONWebKeySet(json: Array("[]".utf8), source: "array") }
    }

    @Test func anRSAKeyFromPEMNeedsAnRSAAlgorithm() throws {
        // A 2048-bit RSA public key (SubjectPublicKeyInfo).
        let pem = """
            -----BEGIN PUBLIC KEY-----
            MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo
            4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u
            +qKhbwKfBstIs+bMY2Zkp18gnTxKLxoS2tFczGkPLPgizskuemMghRniWaoLcyeh
            kd3qqGElvW/VDL5AaWTg0nLVkjRo9z+40RQzuVaE8AkAFmxZzow3x+VJYKdjykkJ
            0iT9wCS0DRTXu269V264Vf/3jvredZiKRkgwlL9xNAwxXFg0x/XFw005UWVRIkdg
            cKWTjpBP2dPwVZ4WWC+9aGVd+Gyn1o0CLelf4rEjGoXbAAEgAqeGUxrcIlbjXfbc
            mwIDAQAB
            -----END PUBLIC KEY-----
            """
        #expect(throws: VerificationKey.Invalid.self) { try VerificationKey(pem: pem, algorithm: nil, source: "k.pem") }
        #expect(throws: VerificationKey.Invalid.self) { try VerificationKey(pem: pem, algorithm: .es256, source: "k.pem") }
        #expect(try VerificationKey(pem: pem, algorithm: .ps256, source: "k.pem").algorithm == .ps256)
        #expect(throws: VerificationKey.Invalid.self) { try VerificationKey(pem: "not a key", algorithm: .rs256, source: "k.pem") }
    }
}
