import Foundation
import Shared
import Synchronization

/// A helper program the test talks to line by line while it runs (the browser harness): its standard output is
/// collected as lines, which the test waits on with a deadline; it is killed when the test lets go of it.
final class LineProcess: Sendable {
    let process: Process
    private let collected = Collected()
    /// Its standard input, when the test talks to it (`send`); otherwise it reads nothing.
    private let input: FileHandle?

    private final class Collected: Sendable {
        let lines = Mutex<[String]>([])
        let partial = Mutex(Data())
        let errors = Mutex(Data())
    }

    init(_ arguments: [String], takesInput: Bool = false) throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let output = Pipe()
        let errorPipe = Pipe()
        process.standardOutput = output
        process.standardError = errorPipe
        if takesInput {
            let pipe = Pipe()
            process.standardInput = pipe
            input = pipe.fileHandleForWriting
        } else {
            process.standardInput = FileHandle.nullDevice
            input = nil
        }
        output.fileHandleForReading.readabilityHandler = { [collected] handle in
            let data = handle.availableData
            let complete: [String] = collected.partial.withLock { buffer in
                buffer.append(data)
                var found: [String] = []
                while let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                    found.append(String(decoding: buffer[buffer.startIndex..<newline], as: UTF8.self))
                    buffer.removeSubrange(buffer.startIndex...newline)
                }
                return found
            }
            collected.lines.withLock { $0 += complete }
        }
        errorPipe.fileHandleForReading.readabilityHandler = { [collected] handle in
            let data = handle.availableData
            collected.errors.withLock { $0.append(data) }
        }
        try process.run()
    }

    var output: [String] { collected.lines.withLock { $0 } }

    /// Writes one line to its standard input.
    func send(_ line: String) throws {
        try input?.write(contentsOf: Data((line + "\n").utf8))
    }
    var errorText: String { collected.errors.withLock { String(decoding: $0, as: UTF8.self) } }

    /// The first line (a JSON object) whose members match `match`, once it has been printed.
    @discardableResult
    func waitForJSON(_ what: String, timeout: Duration = .seconds(30), _ match: ([String: JSONValue]) -> Bool) async throws -> [String: JSONValue] {
        var found: [String: JSONValue]?
        try await waitUntil(what, timeout: timeout, poll: .milliseconds(20)) {
            found = output.lazy.compactMap { try? JSONDecoder().decode([String: JSONValue].self, from: Data($0.utf8)) }.first(where: match)
            if found == nil, !process.isRunning {
                throw TimedOut(description: "the harness exited before \(what): \(output.joined(separator: "\n"))\n\(errorText)")
            }
            return found != nil
        }
        return found!
    }

    /// SIGTERM lets the harness take its browser down with it: it installs its own handler, so the SIGTERM this
    /// test process ignores (and its children inherit ignored) still reaches it. SIGKILL if it does not go.
    func stop() async throws {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGTERM)
        try? await waitUntil("the harness to exit", timeout: .seconds(5)) { !process.isRunning }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}
