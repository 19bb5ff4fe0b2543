#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import Shared
import SystemPackage

/// Runs an installed binary briefly and reads what it prints, before a reload relies on it: the worker's protocol
/// versions (`sse-worker --protocol-versions`), or the supervisor's pre-flight of an in-place upgrade
/// (`sse-supervisor upgrade-check`, the state on its standard input). On the control plane's loop: the child's exit
/// arrives through `ChildProcesses`, and a binary that does not finish within `patience` (it hangs, or is not what
/// it should be) is killed.
enum ProgramProbe {
    enum Outcome: Sendable, Equatable {
        /// It ran and exited; what it printed (at most a pipe's buffer).
        case finished(ExitStatus, output: String)
        /// It could not be started (missing, not executable, not a program).
        case unstartable(Errno)
        /// It was still running after `patience`, and was killed.
        case hung
    }

    static func run(
        _ path: String, arguments: [String], input: CInt? = nil, children: ChildProcesses, eventLoop: any EventLoop,
        patience: TimeAmount
    ) -> EventLoopFuture<Outcome> {
        let output: (read: CInt, write: CInt)
        let pid: pid_t
        do {
            output = try Syscall.pipe()
            do {
                defer { Syscall.close(output.write) }
                try Syscall.setNonBlocking(output.read, true)
                var descriptors = [(source: output.write, target: CInt(1))]
                if let input { descriptors.append((input, 0)) }
                pid = try ProcessSpawn.spawn(
                    path: path, arguments: arguments, descriptors: descriptors, environment: ProcessSpawn.currentEnvironment)
            } catch {
                Syscall.close(output.read)
                throw error
            }
        } catch {
            return eventLoop.makeSucceededFuture(.unstartable((error as? Errno) ?? .ioError))
        }
        let promise = eventLoop.makePromise(of: Outcome.self)
        let timedOut = NIOLoopBoundBox(false, eventLoop: eventLoop)
        let deadline = eventLoop.scheduleTask(in: patience) {
            timedOut.value = true
            _ = try? Syscall.kill(pid, SIGKILL)  // an unreaped child: cannot fail
        }
        children.watch(pid) { status in
            deadline.cancel()
            // It has exited, so whatever it wrote (at most a pipe's buffer) is there to read without waiting.
            let text = readAvailable(output.read, limit: 65_536)
            Syscall.close(output.read)
            let printed = String(decoding: text, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            promise.succeed(timedOut.value ? .hung : .finished(status, output: printed))
        }
        return promise.futureResult
    }

    /// What an installed worker binary says it speaks, or nil if it could not be run, failed, or said nothing.
    static func workerProtocols(at path: String, children: ChildProcesses, eventLoop: any EventLoop) -> EventLoopFuture<String?> {
        run(path, arguments: [WireProtocol.askArgument], children: children, eventLoop: eventLoop, patience: .seconds(5)).map {
            guard case .finished(let status, let output) = $0, status.isCleanExit, !output.isEmpty else { return nil }
            return output
        }
    }

    private static func readAvailable(_ fd: CInt, limit: Int) -> [UInt8] {
        var text: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while text.count < limit {
            let count: Int
            do {
                count = try chunk.withUnsafeMutableBytes { try Syscall.read(fd, into: $0) }
            } catch {
                break  // EAGAIN: a descendant still holds the pipe open; what is there is all there is
            }
            guard count > 0 else { break }
            text += chunk[..<count]
        }
        return text
    }
}
