import Foundation
import Shared
import Testing

/// The Debian package (`scripts/build-deb.sh`), installed with apt into a real systemd sandbox where the Swift
/// toolchain is hidden: it creates the user, the directories and a secret, leaves the service disabled, serves once
/// the socket is enabled, reloads without dropping the stream, stops on remove and takes the secret on purge.
/// The test command builds the package first (`scripts/test.sh`, `SSE_HUB_DEB`); a focused run without it skips this.
@Suite(
    "The Debian package under a real systemd", .serialized,
    .enabled(
        if: SystemdSandbox.isAvailable && BuiltPackage.path != nil,
        "skipped: needs a systemd sandbox and SSE_HUB_DEB (scripts/test.sh builds the package and sets it)"))
struct DebianPackageTests {
    @Test func installEnableStreamReloadRemovePurge() async throws {
        let deb = try #require(BuiltPackage.path)
        let stage = FileManager.default.temporaryDirectory.appendingPathComponent("sse-hub-deb-stage-\(UUID().uuidString)")
        let staged = stage.appendingPathComponent("root/sse-hub.deb")
        try FileManager.default.createDirectory(at: staged.deletingLastPathComponent(), withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: deb, to: staged)
        defer { try? FileManager.default.removeItem(at: stage) }
        let sandbox = try SystemdSandbox.start(name: "deb-tests", stage: stage)
        defer { sandbox.stop() }
        func shell(_ command: String, timeout: Int = 20) throws -> SystemdSandbox.Output {
            try sandbox.run(["sh", "-c", command], timeout: timeout)
        }

        // No Swift toolchain on this root: the binaries must carry their standard library.
        #expect(try shell("mount -t tmpfs tmpfs /opt/swift && ! command -v swift && ls -A /opt/swift | wc -l").text.hasPrefix("0"))
        let install = try shell("DEBIAN_FRONTEND=noninteractive apt-get install -y /root/sse-hub.deb 2>&1", timeout: 120)
        #expect(install.status == 0, "apt-get install: \(install.text)")
        #expect(try shell("ldd /usr/bin/sse-supervisor /usr/bin/sse-worker | grep -c swift || true").text.hasPrefix("0"))
        #expect(try shell("id -u sse-hub").status == 0, "the package created the user")
        #expect(try shell("stat -c '%U %a' /etc/sse-hub/jwt-secret").text.hasPrefix("root 600"))
        #expect(try shell("test -d /run/sse-hub").status == 0)
        #expect(try shell("zcat /usr/share/man/man1/sse-supervisor.serve.1.gz | grep -q 'It Fl -metrics-listen'").status == 0, "man page")
        #expect(try sandbox.run(["systemctl", "is-enabled", "sse-hub.socket"]).text.hasPrefix("disabled"))
        #expect(try sandbox.run(["systemctl", "is-active", "sse-hub.service"]).text.hasPrefix("inactive"))
        #expect(try sandbox.run(["/usr/bin/sse-supervisor", "--version"]).status == 0)

        // systemd 252 booted in these namespaces leaves $CREDENTIALS_DIRECTORY empty (see SystemdTests): the secret
        // the package made reaches the service through the environment here.
        let secret = try shell("cat /etc/sse-hub/jwt-secret").text.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(secret.count >= 32)
        #expect(
            try shell(
                "mkdir -p /etc/systemd/system/sse-hub.service.d && printf '[Service]\\nEnvironment=SSE_JWT_SECRET=%s\\n' '\(secret)' "
                    + "> /etc/systemd/system/sse-hub.service.d/sandbox.conf && systemctl daemon-reload"
            ).status == 0)
        #expect(try sandbox.run(["systemctl", "enable", "--now", "sse-hub.socket"]).status == 0)

        let signer = try await TokenSigner(secret: secret)
        let stream = try sandbox.launch([
            "curl", "-sSN", "--max-time", "120", "http://127.0.0.1:8080/api/sse/stream?token=\(try await signer.sign(userID: "dana"))",
        ])
        try await waitUntil("the first stream to start the service", timeout: .seconds(20)) { stream.text.contains("event: connected") }
        let publisher = try await signer.sign(userID: "backend", publisher: true)
        func publish(_ event: String) throws -> String {
            try sandbox.run([
                "curl", "-sS", "-H", "Authorization: Bearer \(publisher)", "-H", "Content-Type: application/json",
                "-d", #"{"event":"\#(event)","userId":"dana","data":1}"#, "http://127.0.0.1:8080/api/sse/publish",
            ]).text
        }
        #expect(try publish("before-reload").contains(#""success":true"#))
        try await waitUntil("the event on the stream", timeout: .seconds(10)) { stream.text.contains("event: before-reload") }

        #expect(try sandbox.run(["systemctl", "reload", "sse-hub.service"], timeout: 40).status == 0)
        try await waitUntil("the reload to finish", timeout: .seconds(30)) {
            try !sandbox.run(["journalctl", "-u", "sse-hub", "-q", "--no-pager", "SSE_EVENT=reload-done"]).text.isEmpty
        }
        #expect(try publish("after-reload").contains(#""success":true"#))
        try await waitUntil("the event after the reload on the same stream", timeout: .seconds(10)) { stream.text.contains("event: after-reload") }
        #expect(stream.text.components(separatedBy: "event: connected").count - 1 == 1, "one connection all along")

        // Remove stops the service (the stream ends); the secret stays until purge.
        let remove = try shell("DEBIAN_FRONTEND=noninteractive apt-get remove -y sse-hub 2>&1", timeout: 120)
        #expect(remove.status == 0, "apt-get remove: \(remove.text)")
        try await waitUntil("the stream to end", timeout: .seconds(20)) { !stream.process.isRunning }
        #expect(try sandbox.run(["systemctl", "is-active", "sse-hub.service"]).text.hasPrefix("inactive"))
        #expect(try shell("ps -eo comm= | grep '^sse-' || true").text.isEmpty)
        #expect(try shell("test -e /etc/sse-hub/jwt-secret").status == 0)
        let purge = try shell("DEBIAN_FRONTEND=noninteractive apt-get purge -y sse-hub 2>&1", timeout: 120)
        #expect(purge.status == 0, "apt-get purge: \(purge.text)")
        #expect(try shell("test -e /etc/sse-hub").status != 0, "purge removed the secret")
    }
}

/// The package `scripts/test.sh` built for this run, if it did.
enum BuiltPackage {
    static var path: URL? {
        guard let path = ProcessInfo.processInfo.environment["SSE_HUB_DEB"], FileManager.default.fileExists(atPath: path) else { return nil }
        return URL(fileURLWithPath: path)
    }
}
