import Foundation
import Testing

/// Started as root, the supervisor runs its workers as `--user` (HubProcess passes `nobody` when the tests run as root).
@Suite("Privilege drop: root supervisor, unprivileged workers", .serialized, .enabled(if: geteuid() == 0, "needs root: the privilege drop only happens when started as root"))
struct PrivilegeTests {
    /// `Key:\tvalue` lines of `/proc/PID/status`.
    static func status(of pid: Int32) throws -> [String: String] {
        let text = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        return Dictionary(
            text.split(separator: "\n").compactMap { line in
                line.firstIndex(of: ":").map {
                    (String(line[..<$0]), line[line.index(after: $0)...].trimmingCharacters(in: .whitespaces))
                }
            }, uniquingKeysWith: { a, _ in a })
    }

    /// Inodes of every TCP socket in LISTEN state in this network namespace.
    static func listeningSocketInodes() throws -> Set<String> {
        var inodes = Set<String>()
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let text = (try? String(contentsOfFile: table, encoding: .utf8)) ?? ""
            for line in text.split(separator: "\n").dropFirst() {
                let columns = line.split(separator: " ")
                if columns.count > 9, columns[3] == "0A" { inodes.insert(String(columns[9])) }
            }
        }
        return inodes
    }

    @Test func workersRunAsTheTargetUserWithNoPrivilegesAndNoListeningSocket() async throws {
        let hub = try await HubProcess.start(workers: 2)
        defer { Task { try await hub.stop() } }
        let nobody = try #require(getpwnam("nobody")).pointee
        let (uid, gid) = (nobody.pw_uid, nobody.pw_gid)

        #expect(try Self.status(of: hub.process.processIdentifier)["Uid"]?.hasPrefix("0\t") == true, "the supervisor stays root")
        let listening = try Self.listeningSocketInodes()
        #expect(!listening.isEmpty)
        let workers = try await hub.health().workers
        #expect(workers.count == 2)
        for worker in workers {
            let pid = try #require(worker.pid)
            let status = try Self.status(of: pid)
            #expect(status["Uid"] == "\(uid)\t\(uid)\t\(uid)\t\(uid)", "real, effective, saved and filesystem uid")
            #expect(status["Gid"] == "\(gid)\t\(gid)\t\(gid)\t\(gid)")
            #expect(status["Groups"] == "", "no supplementary groups")
            for set in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
                #expect(status[set] == "0000000000000000", "\(set) of worker \(worker.shard)")
            }
            #expect(status["NoNewPrivs"] == "1")
            // Every thread, the main one included (it is the one glibc can miss).
            for thread in try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task") {
                let text = try String(contentsOfFile: "/proc/\(pid)/task/\(thread)/status", encoding: .utf8)
                #expect(text.contains("Uid:\t\(uid)\t\(uid)\t\(uid)\t\(uid)\n"), "thread \(thread) of worker \(worker.shard)")
            }
            let descriptors = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")
            for descriptor in descriptors {
                guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(descriptor)"),
                    target.hasPrefix("socket:[")
                else { continue }
                let inode = String(target.dropFirst("socket:[".count).dropLast())
                #expect(!listening.contains(inode), "worker \(worker.shard) holds a listening socket at fd \(descriptor)")
            }
        }
        // Unprivileged workers still serve.
        let stream = try await hub.openStream("alice")
        #expect(try await hub.publish(#"{"event":"hello","data":1}"#).status == 200)
        try await stream.waitForEvent("hello")
        await stream.close()
        try await hub.stop()
    }

    @Test func aWorkerStartedAsRootWithoutAUserRefusesToRun() async throws {
        let outcome = try await ChildProcess.run(
            HubProcess.buildDirectory.appendingPathComponent("sse-worker"),
            ["--shard", "0", "--control-fd", "3", "--handoff-fd", "4", "--doorbell-fd", "5", "--epoch", "1"])
        #expect(outcome.status == 78)
        #expect(outcome.errors.contains("refusing to run as root"))
    }

    @Test func aRootSupervisorRefusesAnUnknownUser() async throws {
        let outcome = try await ChildProcess.run(
            HubProcess.buildDirectory.appendingPathComponent("sse-supervisor"),
            ["--listen", "127.0.0.1:0", "--workers", "1", "--user", "no-such-user-sse-hub"],
            environment: ["SSE_JWT_SECRET": HubProcess.secret])
        #expect(outcome.status == 78)
        #expect(outcome.errors.contains("there is no user no-such-user-sse-hub"))
    }
}
