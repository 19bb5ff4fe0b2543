import Foundation
import Shared

/// A real systemd booted as PID 1 in fresh namespaces (`scripts/systemd-sandbox.sh`), driven with
/// `systemctl` and `journalctl` through `nsenter`. Every command is bounded by `timeout`.
struct SystemdSandbox: Sendable {
    static let script = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("scripts/systemd-sandbox.sh").path

    struct Output: Sendable {
        var status: Int32
        var text: String
    }

    /// Whether this machine can boot one: root, systemd, unshare/nsenter/script, a writable cgroup, namespaces.
    static let isAvailable: Bool = (try? run([script, "available"]).status) == 0

    let name: String

    /// Boots a sandbox with `stage`'s tree copied over its root.
    static func start(name: String, stage: URL) throws -> SystemdSandbox {
        let sandbox = SystemdSandbox(name: name)
        sandbox.stop()  // a leftover of an interrupted run
        let started = try run([script, "start", name, stage.path])
        guard started.status == 0 else { throw TimedOut(description: "sandbox did not boot: \(started.text)") }
        return sandbox
    }

    /// `command` inside the sandbox, at most `timeout` seconds; stdout and stderr together.
    @discardableResult
    func run(_ command: [String], timeout: Int = 20) throws -> Output {
        try Self.run([Self.script, "exec", name, "timeout", String(timeout)] + command)
    }

    /// `command` inside, as a background process (a client that streams); the caller waits on its output.
    func launch(_ command: [String]) throws -> BackgroundProcess {
        try BackgroundProcess([Self.script, "exec", name] + command)
    }

    /// Powers it off (killing what is left after a bounded wait) and removes its cgroup and state.
    func stop() {
        _ = try? Self.run([Self.script, "stop", name])
    }

    /// Output goes to a file, not a pipe: a process that another test spawns at the same moment can inherit
    /// the pipe's write end and hold it open for as long as it lives, so reading a pipe to its end can hang.
    ///
    /// Spawned and reaped here (`ProcessSpawn`, `waitpid`), not with Foundation's `Process`: Foundation learns that a
    /// child ended when a socket the child inherited closes, and then waits for it with a blocking `waitpid` on its
    /// one process thread. A child that closes its descriptors while it lives (`systemd-socket-activate`, in the
    /// start-up test, does) parks that thread until it exits, and every `waitUntilExit` in the test process with it:
    /// a fresh-clone run hung for an hour with both of the two pool threads parked in this function that way, and
    /// the socket-activated hub waiting for a connection no free thread could make.
    static func run(_ arguments: [String]) throws -> Output {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("sse-sandbox-\(UUID().uuidString).out")
        guard FileManager.default.createFile(atPath: file.path, contents: nil) else {
            throw TimedOut(description: "cannot create \(file.path)")
        }
        defer { try? FileManager.default.removeItem(at: file) }
        let output = try FileHandle(forWritingTo: file)
        defer { try? output.close() }
        let input = try FileHandle(forReadingFrom: URL(fileURLWithPath: "/dev/null"))
        defer { try? input.close() }
        let pid = try ProcessSpawn.spawn(
            path: "/usr/bin/env", arguments: arguments,
            descriptors: [(input.fileDescriptor, 0), (output.fileDescriptor, 1), (output.fileDescriptor, 2)],
            environment: ProcessSpawn.currentEnvironment)
        // Every command is bounded (the script's own waits, `timeout` inside the sandbox): this ends.
        var status: CInt?
        while status == nil {
            status = try Syscall.reapIfExited(pid)
            if status == nil { usleep(10_000) }
        }
        let exit: CInt
        switch ExitStatus(waitStatus: status!) {
        case .exited(let code): exit = code
        case .killed(let signal): exit = 128 + signal  // as a shell reports it
        case .unknown: exit = -1  // not made by the initializer
        }
        return Output(status: exit, text: try String(contentsOf: file, encoding: .utf8))
    }
}

/// A process whose output is collected as it arrives.
final class BackgroundProcess: Sendable {
    let process: Process
    private let output = ProcessOutput()

    init(_ arguments: [String]) throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        let output = output
        pipe.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            if !data.isEmpty { output.text.withLock { $0 += String(decoding: data, as: UTF8.self) } }
        }
        try process.run()
    }

    var text: String { output.text.withLock { $0 } }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}
