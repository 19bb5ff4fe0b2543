import ArgumentParser
import Foundation
import KeySources
import Logging
import ServiceLifecycle
import Shared

/// How tokens are verified: the HS256 secret of the seed's contract, and the public keys identity providers sign
/// with (PEM files, a JWKS file, a JWKS URL), with the claim rules. Every option is off by default; without a public
/// key source the secret is required, as it always was.
struct AuthOptions: ParsableArguments {
    @Option(help: "File holding the HS256 secret (else $SSE_JWT_SECRET, else the systemd credential jwt-secret). Optional when a public key source is given.")
    var jwtSecretFile: String?

    @Option(
        name: .customLong("jwt-public-key-file"),
        help: "[ALG:]PATH of a PEM public key (repeatable): RSA (ALG required: RS256, RS384, RS512 or PS256), EC P-256 (ES256) or P-384 (ES384), Ed25519 (EdDSA). Serves tokens of its algorithm whatever their kid.")
    var publicKeyFiles: [String] = []

    @Option(help: "A JWKS document on disk; re-read within a second of a change (the last good keys stay when it is unreadable).")
    var jwksFile: String?

    @Option(name: .customLong("jwks-url"), help: "A JWKS document over HTTP(S), fetched at start, every --jwks-refresh seconds and on a token of an unknown kid.")
    var jwksURL: String?

    @Option(help: "Seconds between two scheduled fetches of --jwks-url.")
    var jwksRefresh: Int = 300

    @Option(help: "Seconds at least between two fetches of --jwks-url, whatever asks (an unknown kid, a failed fetch).")
    var jwksMinRefresh: Int = 10

    @Option(help: "Seconds a token is still accepted past its exp, and before its nbf (clock skew with the issuer).")
    var jwtLeeway: Int = 0

    @Option(help: "Accept only tokens whose aud holds this value (repeatable: any of them).")
    var jwtAudience: [String] = []

    @Option(help: "Accept only tokens whose iss is this value (repeatable: any of them).")
    var jwtIssuer: [String] = []

    @Option(help: "CLAIM=VALUE that makes a token a publisher's: the claim at that dotted path is VALUE or an array holding it (e.g. realm_access.roles=sse-publisher).")
    var publisherClaim: String = PublisherClaim.role.description

    func validate() throws {
        guard (10...86_400).contains(jwksRefresh) else { throw ValidationError("--jwks-refresh must be 10 to 86400 seconds") }
        guard (1...3600).contains(jwksMinRefresh) else { throw ValidationError("--jwks-min-refresh must be 1 to 3600 seconds") }
        guard (0...600).contains(jwtLeeway) else { throw ValidationError("--jwt-leeway must be 0 to 600 seconds") }
        guard PublisherClaim(publisherClaim) != nil else { throw ValidationError("--publisher-claim must be CLAIM=VALUE, CLAIM a dotted path") }
        if let jwksURL {
            guard let url = URL(string: jwksURL), ["http", "https"].contains(url.scheme?.lowercased()), url.host != nil else {
                throw ValidationError("--jwks-url must be an http:// or https:// URL")
            }
        }
    }

    var hasPublicKeySource: Bool { !publicKeyFiles.isEmpty || jwksFile != nil || jwksURL != nil }

    var rules: ClaimRules {
        ClaimRules(
            leewaySeconds: Int64(jwtLeeway), audiences: jwtAudience, issuers: jwtIssuer,
            publisherClaim: PublisherClaim(publisherClaim) ?? .role)
    }

    /// The keys fixed for the life of the process: the secret (when there is one) and the PEM files. A key that
    /// cannot be read is a configuration error, reported before anything is served.
    func fixedKeys() throws -> [VerificationKey] {
        var keys: [VerificationKey] = []
        do {
            keys.append(VerificationKey(secret: try JWTSecret.load(file: jwtSecretFile)))
        } catch {
            // The secret is optional only beside a public key source; named explicitly, it must be readable.
            if !hasPublicKeySource || jwtSecretFile != nil { throw error }
        }
        for argument in publicKeyFiles {
            var algorithm: JWSAlgorithm?
            var path = argument
            if let colon = argument.firstIndex(of: ":"), let named = JWSAlgorithm(rawValue: String(argument[..<colon])) {
                algorithm = named
                path = String(argument[argument.index(after: colon)...])
            }
            let pem: String
            do {
                pem = try String(contentsOfFile: path, encoding: .utf8)
            } catch {
                throw VerificationKey.Invalid("cannot read the public key \(path): \(error.localizedDescription)")
            }
            keys.append(try VerificationKey(pem: pem, algorithm: algorithm, source: path))
        }
        return keys
    }

    /// The verifier, with its JWKS file read (a document that cannot be used is a configuration error at start) and
    /// the services that keep its JWKS sources current.
    func verifier(logger: Logger) throws -> (TokenVerifier, [any Service]) {
        let ring = KeyRing(fixed: try fixedKeys())
        var sources: [any Service] = []
        if let jwksFile {
            let watcher = JWKSFileWatcher(path: jwksFile, ring: ring, logger: logger)
            try watcher.load()
            sources.append(watcher)
        }
        if let jwksURL {
            sources.append(
                JWKSFetcher(url: jwksURL, ring: ring, refresh: .seconds(jwksRefresh), minimum: .seconds(jwksMinRefresh), logger: logger))
        }
        return (TokenVerifier(keys: ring, rules: rules), sources)
    }
}
