#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Foundation
import SystemPackage

/// What replacing this process's program in place needs (`execve(2)` with the descriptors it keeps): the supervisor's
/// in-place upgrade.
extension Syscall {
    /// `execve(2)`: runs `path` in this process (same pid, same descriptors unless close-on-exec). Returns only on
    /// failure, with its `Errno`; on success this program is gone.
    public static func execute(path: String, arguments: [String], environment: [String]) -> Errno {
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        // The signal mask is kept across execve: the new program must not start with SIGCHLD or SIGHUP blocked
        // because the thread calling this had them blocked.
        var none = sigset_t()
        sigemptyset(&none)
        pthread_sigmask(SIG_SETMASK, &none, nil)
        while true {
            Glibc.execve(path, argv, envp)
            if errno != EINTR { return Errno(rawValue: errno) }
        }
    }

    /// `memfd_create(2)` with `MFD_CLOEXEC`: an anonymous file in memory, for handing bytes to a program this
    /// process executes.
    public static func memoryFile(named name: String) throws(Errno) -> CInt {
        try retryingEINTR("memfd_create") { memfd_create(name, CLINUX_MFD_CLOEXEC) }
    }

    /// Writes all of `bytes` to a blocking descriptor.
    public static func writeAll(_ fd: CInt, _ bytes: [UInt8]) throws(Errno) {
        var written = 0
        while written < bytes.count {
            let count = bytes.withUnsafeBytes { buffer in Glibc.write(fd, buffer.baseAddress! + written, buffer.count - written) }
            if count == -1 {
                if errno == EINTR { continue }
                throw Errno(rawValue: errno)
            }
            written += count
        }
    }

    /// `lseek(2)` to the start: whoever reads the descriptor next (a program it is handed to) reads it all.
    public static func rewind(_ fd: CInt) throws(Errno) {
        _ = try retryingEINTR("lseek") { lseek(fd, 0, SEEK_SET) }
    }

    /// Reads `fd` to its end: a file from its start (`pread(2)`, so its offset does not matter), a pipe from where
    /// it stands.
    public static func readAll(_ fd: CInt) throws(Errno) -> [UInt8] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var seekable = true
        while true {
            let offset = bytes.count
            let count = chunk.withUnsafeMutableBytes { buffer in
                seekable ? pread(fd, buffer.baseAddress, buffer.count, off_t(offset)) : Glibc.read(fd, buffer.baseAddress, buffer.count)
            }
            if count == -1 {
                if errno == EINTR { continue }
                if errno == ESPIPE, seekable {
                    seekable = false
                    continue
                }
                throw Errno(rawValue: errno)
            }
            if count == 0 { return bytes }
            bytes += chunk[0..<count]
        }
    }

    /// Whether `fd` is closed by `execve` (`FD_CLOEXEC`).
    public static func isCloseOnExec(_ fd: CInt) -> Bool {
        (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0
    }

    /// The descriptors this process has open (`/proc/self/fd`), the one used to list them excepted.
    public static func openDescriptors() -> [CInt] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") else { return [] }
        // The listing's own descriptor is closed by now, and its number may be free: check each one still is open.
        return entries.compactMap { CInt($0) }.filter { fcntl($0, F_GETFD) != -1 }.sorted()
    }
}
