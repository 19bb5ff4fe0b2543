import Foundation
import Shared
import Testing

/// Tokens signed with identity providers' keys (PEM files, a JWKS file, a JWKS URL), made by PyJWT with
/// `cryptography` (`Clients/pyjwt_tokens.py`), verified by a real supervisor through a real stream or publish.
@Suite(.serialized) struct IdentityProviderKeyTests {
    /// A directory of fresh keys (PEM and JWKS) made by PyJWT's side.
    struct Keys {
        let directory: URL
        static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Clients/pyjwt_tokens.py")

        static func make() async throws -> Keys {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sse-keys-\(UUID().uuidString)")
            let outcome = try await ChildProcess.run(URL(fileURLWithPath: "/usr/bin/env"), ["python3", script.path, "keys", directory.path])
            #expect(outcome.status == 0, "\(outcome.errors)")
            return Keys(directory: directory)
        }

        func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

        struct Spec: Encodable {
            var name: String
            var alg: String
            var key: String = ""
            var kid: String?
            var claims: [String: JSONValue]
            var tamper = false
        }

        /// Tokens signed by PyJWT, by name.
        func sign(_ specs: [Spec]) async throws -> [String: String] {
            let json = String(decoding: try JSONEncoder().encode(specs), as: UTF8.self)
            let outcome = try await ChildProcess.run(
                URL(fileURLWithPath: "/usr/bin/env"), ["python3", Self.script.path, "sign", directory.path, json])
            #expect(outcome.status == 0, "\(outcome.errors)")
            return try JSONDecoder().decode([String: String].self, from: Data(outcome.output.utf8))
        }

        func remove() { try? FileManager.default.removeItem(at: directory) }
    }

    static var inAnHour: JSONValue { .integer(Int64(Date().timeIntervalSince1970) + 3600) }

    static func user(_ id: String, _ extra: [String: JSONValue] = [:]) -> [String: JSONValue] {
        ["sub": .string(id), "exp": inAnHour].merging(extra) { $1 }
    }

    /// The status of opening a stream with `token`, and the `connected` event's user when it was 200.
    static func streamStatus(_ hub: HubProcess, _ token: String) async throws -> (status: Int, userID: String?) {
        let stream = try await SSETestStream.open(port: hub.port, target: "/api/sse/stream?token=\(token)")
        defer { Task { await stream.close() } }
        try await waitUntil("a stream's answer") {
            let state = stream.connection.snapshot
            return state.closed || state.ended || !stream.events(named: "connected").isEmpty
        }
        let state = stream.connection.snapshot
        guard let status = state.status else { throw TimedOut(description: "no status for a stream") }
        guard status == 200 else { return (status, nil) }
        let connected = try await stream.waitForEvent("connected")
        let data = try JSONDecoder().decode([String: String].self, from: Data((connected.first?.data ?? "").utf8))
        return (200, data["userId"])
    }

    @Test func everyAlgorithmVerifiesFromPEMFilesAndAJWKSFileAndNoForgeryPasses() async throws {
        let keys = try await Keys.make()
        defer { keys.remove() }
        let hub = try await HubProcess.start(
            workers: 1,
            arguments: [
                "--jwt-public-key-file", "RS384:" + keys.path("rsa.pub.pem"), "--jwt-public-key-file", keys.path("ec384.pub.pem"),
                "--jwt-public-key-file", keys.path("ed.pub.pem"), "--jwks-file", keys.path("jwks.json"),
            ])
        defer { Task { try await hub.stop() } }
        let good: [Keys.Spec] = [
            .init(name: "RS256", alg: "RS256", key: "rsa", kid: "rsa-1", claims: Self.user("u-rs256")),
            .init(name: "RS384", alg: "RS384", key: "rsa", claims: Self.user("u-rs384")),
            .init(name: "PS256", alg: "PS256", key: "rsa", kid: "ps-1", claims: Self.user("u-ps256")),
            .init(name: "ES256", alg: "ES256", key: "ec256", kid: "ec256-1", claims: Self.user("u-es256")),
            .init(name: "ES384", alg: "ES384", key: "ec384", claims: Self.user("u-es384")),
            .init(name: "ES384-kid", alg: "ES384", key: "ec384", kid: "ec384-1", claims: Self.user("u-es384k")),
            .init(name: "EdDSA", alg: "EdDSA", key: "ed", kid: "ed-1", claims: Self.user("u-eddsa")),
            .init(name: "EdDSA-pem", alg: "EdDSA", key: "ed", claims: Self.user("u-eddsa-pem")),
            .init(name: "HS256", alg: "HS256", key: "secret:" + HubProcess.secret, claims: Self.user("u-hs256")),
        ]
        let bad: [Keys.Spec] = [
            .init(name: "tampered RS256", alg: "RS256", key: "rsa", kid: "rsa-1", claims: Self.user("x"), tamper: true),
            .init(name: "tampered ES256", alg: "ES256", key: "ec256", kid: "ec256-1", claims: Self.user("x"), tamper: true),
            .init(name: "tampered EdDSA", alg: "EdDSA", key: "ed", kid: "ed-1", claims: Self.user("x"), tamper: true),
            .init(name: "none", alg: "none", claims: Self.user("x")),
            .init(name: "HS256 with the RSA public key as secret", alg: "HS256", key: "pem-as-secret:rsa", claims: Self.user("x")),
            .init(name: "HS256 with the RSA public key as secret, kid rsa-1", alg: "HS256", key: "pem-as-secret:rsa", kid: "rsa-1", claims: Self.user("x")),
            .init(name: "unknown kid", alg: "RS256", key: "rsa2", kid: "rsa-9", claims: Self.user("x")),
            .init(name: "a key not configured", alg: "RS256", key: "rsa2", claims: Self.user("x")),
            // ES256 names its kid but is signed by the P-384 key's curve partner: wrong key for the kid.
            .init(name: "RS512 with no RS512 key", alg: "RS512", key: "rsa", kid: "rsa-1", claims: Self.user("x")),
            .init(name: "expired RS256", alg: "RS256", key: "rsa", kid: "rsa-1", claims: ["sub": "x", "exp": .integer(Int64(Date().timeIntervalSince1970) - 60)]),
        ]
        let tokens = try await keys.sign(good + bad)
        for spec in good {
            let (status, userID) = try await Self.streamStatus(hub, tokens[spec.name]!)
            #expect(status == 200, "\(spec.name)")
            #expect(userID == spec.claims["sub"].flatMap { if case .string(let s) = $0 { s } else { nil } }, "\(spec.name)")
        }
        for spec in bad {
            let response = try await TestHTTP.request(port: hub.port, "GET", "/api/sse/stream?token=\(tokens[spec.name]!)")
            #expect(response.status == 401, "\(spec.name)")
            #expect(response.message == "Token is not valid", "\(spec.name)")
        }
        // The publishers' API verifies the same keys.
        let publisher = try await keys.sign([.init(name: "p", alg: "ES256", key: "ec256", kid: "ec256-1", claims: Self.user("backend", ["role": "publisher"]))])
        let published = try await TestHTTP.request(
            port: hub.port, "POST", "/api/sse/publish", headers: ["Authorization": "Bearer \(publisher["p"]!)", "Content-Type": "application/json"],
            body: #"{"event":"ping","data":{}}"#)
        #expect(published.status == 200, "\(published)")
    }

    @Test func claimRulesAudienceIssuerLeewayAndAPublisherClaimElsewhere() async throws {
        let keys = try await Keys.make()
        defer { keys.remove() }
        let hub = try await HubProcess.start(
            workers: 1,
            arguments: [
                "--jwks-file", keys.path("jwks.json"), "--jwt-audience", "sse", "--jwt-audience", "sse-staging", "--jwt-issuer", "https://idp.test",
                "--jwt-leeway", "30", "--publisher-claim", "realm_access.roles=sse-publisher",
            ])
        defer { Task { try await hub.stop() } }
        let now = Int64(Date().timeIntervalSince1970)
        func spec(_ name: String, _ claims: [String: JSONValue]) -> Keys.Spec {
            .init(name: name, alg: "ES256", key: "ec256", kid: "ec256-1", claims: claims)
        }
        let idp: [String: JSONValue] = ["aud": "sse", "iss": "https://idp.test"]
        let tokens = try await keys.sign([
            spec("ok", Self.user("a", idp)),
            spec("aud in a list", Self.user("b", ["aud": .array(["other", "sse-staging"]), "iss": "https://idp.test"])),
            spec("expired within the leeway", ["sub": "c", "exp": .integer(now - 10)].merging(idp) { $1 }),
            spec("nbf within the leeway", Self.user("d", ["nbf": .integer(now + 10)].merging(idp) { $1 })),
            spec("no aud", Self.user("x", ["iss": "https://idp.test"])),
            spec("wrong aud", Self.user("x", ["aud": "billing", "iss": "https://idp.test"])),
            spec("wrong iss", Self.user("x", ["aud": "sse", "iss": "https://evil.test"])),
            spec("expired past the leeway", ["sub": "x", "exp": .integer(now - 60)].merging(idp) { $1 }),
            spec("nbf past the leeway", Self.user("x", ["nbf": .integer(now + 120)].merging(idp) { $1 })),
            spec("publisher by realm role", Self.user("backend", ["realm_access": .object(["roles": .array(["sse-publisher", "x"])])].merging(idp) { $1 })),
            spec("role publisher is not enough here", Self.user("backend", ["role": "publisher"].merging(idp) { $1 })),
        ])
        for name in ["ok", "aud in a list", "expired within the leeway", "nbf within the leeway"] {
            #expect(try await Self.streamStatus(hub, tokens[name]!).status == 200, "\(name)")
        }
        for name in ["no aud", "wrong aud", "wrong iss", "expired past the leeway", "nbf past the leeway"] {
            #expect(try await Self.streamStatus(hub, tokens[name]!).status == 401, "\(name)")
        }
        func publish(_ name: String) async throws -> Int {
            try await TestHTTP.request(
                port: hub.port, "POST", "/api/sse/publish",
                headers: ["Authorization": "Bearer \(tokens[name]!)", "Content-Type": "application/json"], body: #"{"event":"ping","data":{}}"#
            ).status
        }
        #expect(try await publish("publisher by realm role") == 200)
        #expect(try await publish("role publisher is not enough here") == 403)
    }

    @Test func aRotatedJWKSFileIsReadAndARemovedKeyStopsVerifyingAtOnce() async throws {
        let keys = try await Keys.make()
        defer { keys.remove() }
        let live = keys.path("live-jwks.json")
        try FileManager.default.copyItem(atPath: keys.path("jwks.json"), toPath: live)
        let hub = try await HubProcess.start(workers: 1, arguments: ["--jwks-file", live])
        defer { Task { try await hub.stop() } }
        let tokens = try await keys.sign([
            .init(name: "old", alg: "RS256", key: "rsa", kid: "rsa-1", claims: Self.user("old")),
            .init(name: "new", alg: "RS256", key: "rsa2", kid: "rsa-2", claims: Self.user("new")),
        ])
        #expect(try await Self.streamStatus(hub, tokens["old"]!).status == 200)
        #expect(try await Self.streamStatus(hub, tokens["new"]!).status == 401)
        // An atomic replace, as a config manager writes it.
        let staged = keys.path("staged.json")
        try FileManager.default.copyItem(atPath: keys.path("jwks-rotated.json"), toPath: staged)
        #expect(rename(staged, live) == 0)
        try await waitUntil("the rotated key to verify", timeout: .seconds(10), poll: .milliseconds(200)) {
            try await Self.streamStatus(hub, tokens["new"]!).status == 200
        }
        // The old token was verified (and remembered by the token cache) before: the key's removal ends that.
        #expect(try await Self.streamStatus(hub, tokens["old"]!).status == 401)
        // A broken document is logged and the last good keys stay.
        try Data("{not json".utf8).write(to: URL(fileURLWithPath: live))
        try await waitUntil("the refusal to be logged", timeout: .seconds(10)) { hub.log.contains("jwks-refused") }
        #expect(try await Self.streamStatus(hub, tokens["new"]!).status == 200)
    }

    @Test func aJWKSURLIsFetchedAndAnUnknownKidFetchesItAgainAndAnOutageKeepsTheKeys() async throws {
        let keys = try await Keys.make()
        defer { keys.remove() }
        let served = keys.directory.appendingPathComponent("served")
        try FileManager.default.createDirectory(at: served, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: keys.path("jwks.json"), toPath: served.appendingPathComponent("jwks.json").path)
        let port = try HubProcess.freePort()
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        server.arguments = ["python3", "-m", "http.server", "--bind", "127.0.0.1", "--directory", served.path, String(port)]
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        // SIGKILL: the test process ignores SIGTERM, and its children inherit that.
        defer { if server.isRunning { kill(server.processIdentifier, SIGKILL) } }
        // The schedule (an hour) never fires in this test: every fetch after the first is an unknown kid's.
        let hub = try await HubProcess.start(
            workers: 1,
            arguments: ["--jwks-url", "http://127.0.0.1:\(port)/jwks.json", "--jwks-refresh", "3600", "--jwks-min-refresh", "1"])
        defer { Task { try await hub.stop() } }
        let tokens = try await keys.sign([
            .init(name: "old", alg: "RS256", key: "rsa", kid: "rsa-1", claims: Self.user("old")),
            .init(name: "new", alg: "RS256", key: "rsa2", kid: "rsa-2", claims: Self.user("new")),
        ])
        try await waitUntil("the first fetch", timeout: .seconds(15), poll: .milliseconds(200)) {
            try await Self.streamStatus(hub, tokens["old"]!).status == 200
        }
        let rotated = served.appendingPathComponent("jwks.json")
        try FileManager.default.removeItem(at: rotated)
        try FileManager.default.copyItem(atPath: keys.path("jwks-rotated.json"), toPath: rotated.path)
        // The first try is refused (and asks for a fetch); a retry a moment later finds the key.
        try await waitUntil("the unknown kid to fetch the rotated keys", timeout: .seconds(15), poll: .milliseconds(300)) {
            try await Self.streamStatus(hub, tokens["new"]!).status == 200
        }
        #expect(hub.log.contains("jwks-loaded"))
        kill(server.processIdentifier, SIGKILL)
        try await waitUntil("the JWKS server to exit") { !server.isRunning }
        // Unknown kids keep asking; every fetch fails; the keys stay.
        try await waitUntil("a failed fetch to be logged", timeout: .seconds(15), poll: .milliseconds(300)) {
            _ = try await Self.streamStatus(hub, tokens["old"]!)
            return hub.log.contains("jwks-refused")
        }
        #expect(try await Self.streamStatus(hub, tokens["new"]!).status == 200)
    }

    @Test func aSupervisorWithOnlyPublicKeysNeedsNoSecretAndABadKeyFileStopsItAtStart() async throws {
        let keys = try await Keys.make()
        defer { keys.remove() }
        let bad = try await ChildProcess.run(
            HubProcess.buildDirectory.appendingPathComponent("sse-supervisor"),
            ["--listen", "127.0.0.1:0", "--workers", "1", "--jwt-public-key-file", keys.path("rsa.pub.pem")],
            environment: ["PATH": "/usr/bin:/bin"], timeout: .seconds(30))
        #expect(bad.status == 78, "\(bad.errors)")
        #expect((bad.output + bad.errors).contains("an RSA key needs its algorithm"), "\(bad.output + bad.errors)")
        let hub = try await HubProcess.start(
            workers: 1, arguments: ["--jwt-public-key-file", "PS256:" + keys.path("rsa.pub.pem")], environment: ["SSE_JWT_SECRET": ""])
        defer { Task { try await hub.stop() } }
        let tokens = try await keys.sign([
            .init(name: "ps", alg: "PS256", key: "rsa", claims: Self.user("ps")),
            .init(name: "hs", alg: "HS256", key: "secret:" + HubProcess.secret, claims: Self.user("hs")),
        ])
        #expect(try await Self.streamStatus(hub, tokens["ps"]!).status == 200)
        #expect(try await Self.streamStatus(hub, tokens["hs"]!).status == 401)
    }
}

/// Claims written as literals.
extension JSONValue: ExpressibleByStringLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
}
