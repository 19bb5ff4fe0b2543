import Foundation
import Shared
import SystemPackage

/// Where the state of an in-place upgrade travels: a memory file, named to the new program by its descriptor
/// (`UpgradeState.environmentKey`), and read from its start whatever its offset.
public enum UpgradeStateFile {
    /// A memory file (close-on-exec) holding `state`.
    static func write(_ state: UpgradeState) throws -> CInt {
        let bytes = try state.encoded()
        let fd = try Syscall.memoryFile(named: "sse-hub-upgrade-state")
        do {
            try Syscall.writeAll(fd, bytes)
            try Syscall.rewind(fd)
        } catch {
            Syscall.close(fd)
            throw error
        }
        return fd
    }

    /// Reads a state from `fd` (the pre-flight's standard input, or the file an upgrade left).
    public static func read(_ fd: CInt) throws -> UpgradeState {
        try UpgradeState.decode(try Syscall.readAll(fd))
    }

    /// In a program an in-place upgrade executed: the state, with its file closed and its variable gone (the
    /// workers this program starts must not see it), and its descriptors close-on-exec again. Nil otherwise.
    public static func takeOver() throws -> UpgradeState? {
        guard let text = ProcessInfo.processInfo.environment[UpgradeState.environmentKey] else { return nil }
        unsetenv(UpgradeState.environmentKey)
        guard let fd = CInt(text), fd > 2 else { throw UpgradeStateUnreadable.notAState("\(UpgradeState.environmentKey)=\(text)") }
        defer { Syscall.close(fd) }
        let state = try read(fd)
        let inherited = Set(state.inherited)
        for descriptor in state.descriptors where !inherited.contains(descriptor) { try? Syscall.setCloseOnExec(descriptor, true) }
        return state
    }

    /// The descriptors this process's parent gave it: open without close-on-exec, beyond the standard three. Call
    /// before anything of this program opens one.
    public static func inheritedDescriptors() -> [CInt] {
        Syscall.openDescriptors().filter { $0 > 2 && !Syscall.isCloseOnExec($0) }
    }
}

/// `sse-supervisor upgrade-check`: the pre-flight a running supervisor asks of the binary it is about to execute.
/// Reads the state on standard input; answers one JSON line, `{"release":…,"protocols":…,"format":…}`, and exit
/// status 0 when this release can take it over; else why not, and `refusedStatus`.
public enum UpgradeCheck {
    public static let commandName = "upgrade-check"
    /// EX_DATAERR: the state is not one this release can take over.
    public static let refusedStatus: CInt = 65

    /// The answer, and whether the state can be taken over.
    public static func answer(stateOn fd: CInt) -> (text: String, accepted: Bool) {
        let state: UpgradeState
        do {
            state = try UpgradeStateFile.read(fd)
        } catch {
            return ("\(error)", false)
        }
        if let reason = state.incompatibility { return (reason, false) }
        struct Answer: Encodable {
            var release: String
            var protocols: String
            var format: Int
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let answer = Answer(release: Release.version, protocols: WireProtocol.versions, format: UpgradeState.currentFormat)
        return (String(decoding: (try? encoder.encode(answer)) ?? Data(), as: UTF8.self), true)
    }
}
