import ArgumentParser
import Dispatch
import Foundation
import Shared

/// The worker's entry point: parses its arguments and drops privileges on the main thread while it is
/// still the only one, then runs `WorkerCommand` on Swift concurrency.
///
/// Why not an async `main`: by the time one runs, the main thread has entered `dispatch_main`, which
/// `pthread_exit`s it; glibc's `setuid` then no longer reaches it, and it would stay root (seen as
/// `Uid: 0` in `/proc/PID/status`) while the other threads drop.
@main
enum WorkerMain {
    static func main() {
        // Asked by a supervisor before a reload starts workers from this binary.
        if CommandLine.arguments.dropFirst().first == WireProtocol.askArgument {
            print(WireProtocol.versions)
            return
        }
        let command: WorkerCommand
        do {
            command = try WorkerCommand.parse()
        } catch {
            WorkerCommand.exit(withError: error)
        }
        HubLogging.bootstrap(identifier: "sse-worker", level: command.logLevel)
        do {
            try PrivilegeDrop.become(user: command.user)
        } catch {
            command.logger.critical("cannot drop privileges: \(error)")
            WorkerCommand.exit(withError: ExitCode(78))  // EX_CONFIG
        }
        Task {
            do {
                try await command.run()
                WorkerCommand.exit()
            } catch {
                WorkerCommand.exit(withError: error)
            }
        }
        dispatchMain()
    }
}
