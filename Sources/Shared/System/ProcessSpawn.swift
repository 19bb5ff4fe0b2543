#if canImport(Glibc)
import Glibc
#endif
import CLinux
import SystemPackage

/// Starting child processes with chosen descriptors in place.
public enum ProcessSpawn {
    /// `posix_spawn(3)` of the executable at `path`.
    ///
    /// `descriptors` maps a descriptor of ours to the number it gets in the child (`posix_spawn_file_actions_adddup2`,
    /// which clears close-on-exec on the copy); every other descriptor above 2 is closed in the child.
    /// Signal dispositions and the mask are reset, because the parent ignores the signals it handles
    /// through swift-service-lifecycle and a child must not inherit that.
    public static func spawn(
        path: String,
        arguments: [String],
        descriptors: [(source: CInt, target: CInt)],
        environment: [String]
    ) throws(Errno) -> pid_t {
        var fileActions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fileActions)
        defer { posix_spawn_file_actions_destroy(&fileActions) }
        for (source, target) in descriptors {
            posix_spawn_file_actions_adddup2(&fileActions, source, target)
        }
        // Nothing else crosses over, not even a descriptor someone left without close-on-exec: a worker
        // must never hold a listening socket or another process's pipe.
        posix_spawn_file_actions_addclosefrom_np(&fileActions, (descriptors.map(\.target).max() ?? 2) + 1)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var emptySet = sigset_t()
        sigemptyset(&emptySet)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE, SIGUSR1, SIGUSR2, SIGCHLD] {
            sigaddset(&defaults, signal)
        }
        posix_spawnattr_setsigmask(&attributes, &emptySet)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, path, &fileActions, &attributes, argv, envp)
        guard result == 0 else { throw Errno(rawValue: result) }
        return pid
    }

    /// The environment of this process as `NAME=value` strings.
    public static var currentEnvironment: [String] {
        var result: [String] = []
        var pointer = environ
        while let entry = pointer.pointee {
            result.append(String(cString: entry))
            pointer += 1
        }
        return result
    }
}
