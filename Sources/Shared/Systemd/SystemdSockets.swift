import CSystemd
#if canImport(Glibc)
import Glibc
#endif

/// Sockets passed by systemd socket activation (`sd_listen_fds_with_names(3)`).
public enum SystemdSockets {
    public struct Passed: Sendable {
        public var descriptor: CInt
        /// From `FileDescriptorName=` (`LISTEN_FDNAMES`); systemd says `unknown` when none was set.
        public var name: String
    }

    /// Takes the passed descriptors (making them close-on-exec) and unsets `LISTEN_*`, so children never see them.
    public static func take() -> [Passed] {
        var names: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
        let count = sd_listen_fds_with_names(1, &names)
        guard count > 0 else { return [] }
        defer {
            if let names {
                for index in 0..<Int(count) { free(names[index]) }
                free(names)
            }
        }
        return (0..<count).map { index in
            let fd = SD_LISTEN_FDS_START + index
            let name = names?[Int(index)].map { String(cString: $0) } ?? "unknown"
            // Best effort: a spawned worker inherits nothing above its own descriptors anyway (`ProcessSpawn`'s closefrom).
            try? Syscall.setCloseOnExec(fd, true)
            return Passed(descriptor: fd, name: name)
        }
    }
}
