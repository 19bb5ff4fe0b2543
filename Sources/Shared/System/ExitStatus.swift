#if canImport(Glibc)
import Glibc
#endif
import SystemPackage

/// How a child process ended, decoded from `waitpid`'s status; or why that could not be learnt.
public enum ExitStatus: Sendable, Equatable, CustomStringConvertible {
    case exited(code: CInt)
    case killed(signal: CInt)
    /// `waitpid` itself failed (`ECHILD`: someone else reaped it): the process is gone, how is unknown.
    case unknown(Errno)

    /// Decodes a raw wait status (`WIFEXITED`/`WEXITSTATUS`, `WIFSIGNALED`/`WTERMSIG`).
    public init(waitStatus: CInt) {
        let signal = waitStatus & 0x7f
        self = signal == 0 ? .exited(code: (waitStatus >> 8) & 0xff) : .killed(signal: signal)
    }

    public var isCleanExit: Bool { self == .exited(code: 0) }

    /// `exit code 3`, `signal 9`, `unknown (waitpid: No child processes)`: what `SSE_STATUS` shows in the journal.
    public var description: String {
        switch self {
        case .exited(let code): "exit code \(code)"
        case .killed(let signal): "signal \(signal)"
        case .unknown(let error): "unknown (waitpid: \(error))"
        }
    }
}
