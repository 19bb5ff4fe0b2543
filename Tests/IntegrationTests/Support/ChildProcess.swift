import Foundation
import Synchronization

/// Runs a program to completion without blocking a thread of the test's concurrency pool: the pool has
/// only as many threads as cores (two here), and a test parked in `waitUntilExit` starves every other test.
enum ChildProcess {
    struct Outcome: Sendable {
        var status: Int32
        var output: String
        var errors: String
    }

    private final class Collected: Sendable {
        let output = Mutex(Data())
        let errors = Mutex(Data())
    }

    /// Runs the program; one still running after `timeout` is killed (and its outcome says so).
    static func run(
        _ executable: URL, _ arguments: [String], environment: [String: String]? = nil, timeout: Duration = .seconds(120)
    ) async throws -> Outcome {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        if let environment { process.environment = environment }
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        let collected = Collected()
        output.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            collected.output.withLock { $0.append(data) }
        }
        errors.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            collected.errors.withLock { $0.append(data) }
        }
        let status: Int32 = try await withCheckedThrowingContinuation { continuation in
            process.terminationHandler = { process in continuation.resume(returning: process.terminationStatus) }
            do {
                try process.run()
            } catch {
                process.terminationHandler = nil
                continuation.resume(throwing: error)
                return
            }
            let pid = process.processIdentifier
            Task {
                try? await Task.sleep(for: timeout)
                if process.isRunning {
                    collected.errors.withLock { $0.append(Data("\n[killed after \(timeout)]\n".utf8)) }
                    kill(pid, SIGKILL)
                }
            }
        }
        // Whatever is still in the pipes once the program has exited.
        output.fileHandleForReading.readabilityHandler = nil
        errors.fileHandleForReading.readabilityHandler = nil
        let restOut = (try? output.fileHandleForReading.readToEnd()) ?? nil
        let restErr = (try? errors.fileHandleForReading.readToEnd()) ?? nil
        return Outcome(
            status: status,
            output: String(decoding: collected.output.withLock { $0 } + (restOut ?? Data()), as: UTF8.self),
            errors: String(decoding: collected.errors.withLock { $0 } + (restErr ?? Data()), as: UTF8.self))
    }
}
