#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import Shared

/// Asks an installed worker binary which protocols it speaks (`sse-worker --protocol-versions`) before a reload
/// starts workers from it. On the control plane's loop: the child's exit arrives through `ChildProcesses`, and a
/// binary that does not answer within `patience` (it is not an sse-worker, or hangs) is killed.
enum WorkerProbe {
    /// What the binary printed, or nil if it could not be run, failed, or said nothing.
    static func protocolVersions(
        ofWorkerAt path: String, children: ChildProcesses, eventLoop: any EventLoop, patience: TimeAmount = .seconds(5)
    ) -> EventLoopFuture<String?> {
        let output: (read: CInt, write: CInt)
        let pid: pid_t
        do {
            output = try Syscall.pipe()
            do {
                defer { Syscall.close(output.write) }
                try Syscall.setNonBlocking(output.read, true)
                pid = try ProcessSpawn.spawn(
                    path: path, arguments: [WireProtocol.askArgument], descriptors: [(output.write, 1)],
                    environment: ProcessSpawn.currentEnvironment)
            } catch {
                Syscall.close(output.read)
                throw error
            }
        } catch {
            return eventLoop.makeSucceededFuture(nil)  // not runnable: the refusal says it speaks nothing understood
        }
        let promise = eventLoop.makePromise(of: String?.self)
        let deadline = eventLoop.scheduleTask(in: patience) { _ = try? Syscall.kill(pid, SIGKILL) }  // an unreaped child: cannot fail
        children.watch(pid) { status in
            deadline.cancel()
            // It has exited, so whatever it wrote (at most a pipe's buffer) is there to read without waiting.
            let text = readAvailable(output.read, limit: 4096)
            Syscall.close(output.read)
            let line = String(decoding: text, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            promise.succeed(status.isCleanExit && !line.isEmpty ? line : nil)
        }
        return promise.futureResult
    }

    private static func readAvailable(_ fd: CInt, limit: Int) -> [UInt8] {
        var text: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 256)
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
