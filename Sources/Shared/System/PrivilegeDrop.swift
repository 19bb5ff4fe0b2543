#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Foundation
import SystemPackage

/// Credential system calls, wrapped once (conventions as in `Syscall`).
extension Syscall {
    /// `geteuid(2)`.
    public static var effectiveUserID: uid_t { geteuid() }

    /// `setgroups(2)`: replaces the supplementary groups.
    public static func setGroups(_ groups: [gid_t]) throws(Errno) {
        _ = try retryingEINTR("setgroups") { Glibc.setgroups(groups.count, groups) }
    }

    /// `setgid(2)`: as root, sets the real, effective and saved group ids.
    public static func setGroupID(_ gid: gid_t) throws(Errno) {
        _ = try retryingEINTR("setgid") { Glibc.setgid(gid) }
    }

    /// `setuid(2)`: as root, sets the real, effective and saved user ids, which also clears the
    /// permitted, effective and ambient capability sets.
    public static func setUserID(_ uid: uid_t) throws(Errno) {
        _ = try retryingEINTR("setuid") { Glibc.setuid(uid) }
    }

    /// `prctl(PR_SET_NO_NEW_PRIVS, 1)`: no `execve` can grant privileges to this process or its children again.
    public static func forbidNewPrivileges() throws(Errno) {
        _ = try retryingEINTR("prctl") { clinux_set_no_new_privileges() }
    }

    /// `capget(2)`: the effective and permitted capability sets, as bit masks.
    public static func capabilities() throws(Errno) -> (effective: UInt64, permitted: UInt64) {
        var effective: UInt64 = 0
        var permitted: UInt64 = 0
        _ = try retryingEINTR("capget") { clinux_capabilities(&effective, &permitted) }
        return (effective, permitted)
    }

    /// `getpwnam_r(3)`: the account called `name`, or nil when there is none.
    public static func account(named name: String) throws(Errno) -> Account? {
        var entry = passwd()
        var found: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 4096)
        while true {
            let result = getpwnam_r(name, &entry, &buffer, buffer.count, &found)
            if result == ERANGE, buffer.count < 1 << 20 {
                buffer = [CChar](repeating: 0, count: buffer.count * 4)
                continue
            }
            if result == EINTR { continue }
            guard result == 0 else { throw Errno(rawValue: result) }
            guard let found else { return nil }
            return Account(name: name, userID: found.pointee.pw_uid, groupID: found.pointee.pw_gid)
        }
    }

    public struct Account: Sendable, Hashable {
        public var name: String
        public var userID: uid_t
        public var groupID: gid_t
    }
}

/// How a worker sheds root: started by a root supervisor, it becomes `--user` before it touches anything
/// (no supplementary groups, no capabilities, no new privileges); it never serves as root.
public enum PrivilegeDrop {
    public enum Failure: Error, CustomStringConvertible {
        case noSuchUser(String)
        case runningAsRootWithoutUser
        case wrongUser(wanted: String, actual: uid_t)
        case stillPrivileged(String)
        case systemCall(String, Errno)

        public var description: String {
            switch self {
            case .noSuchUser(let name): "there is no user \(name) (create it: systemd-sysusers, or useradd --system \(name))"
            case .runningAsRootWithoutUser: "refusing to run as root: pass --user NAME to run as that user"
            case .wrongUser(let wanted, let actual): "started as uid \(actual), not as user \(wanted), and not as root to become it"
            case .stillPrivileged(let what): "privileges are left after dropping them: \(what)"
            case .systemCall(let call, let errno): "\(call) failed: \(errno)"
            }
        }
    }

    /// The account `name`, which must exist.
    public static func account(named name: String) throws(Failure) -> Syscall.Account {
        let account: Syscall.Account?
        do {
            account = try Syscall.account(named: name)
        } catch {
            throw .systemCall("getpwnam_r(\(name))", error)
        }
        guard let account else { throw .noSuchUser(name) }
        return account
    }

    /// As root: becomes `user` for good. As anyone else: checks that this process already runs as `user`
    /// when one is named. Root without a user is refused.
    @discardableResult
    public static func become(user: String?) throws(Failure) -> Syscall.Account? {
        guard Syscall.effectiveUserID == 0 else {
            guard let user else { return nil }
            let account = try account(named: user)
            guard account.userID == getuid() else { throw .wrongUser(wanted: user, actual: getuid()) }
            return account
        }
        guard let user else { throw .runningAsRootWithoutUser }
        let account = try account(named: user)
        try drop(to: account)
        return account
    }

    /// Groups first (they need root), then the group id, then the user id; then make sure it worked.
    /// Only while the process has one thread: glibc applies id changes to every thread it knows, and a
    /// thread it does not (the main thread after `dispatch_main`) would stay root.
    static func drop(to account: Syscall.Account) throws(Failure) {
        let threads: Int
        do {
            threads = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count
        } catch {
            // Not knowing is not "one": without /proc the drop could not be shown to reach every thread.
            throw .stillPrivileged("cannot count this process's threads (/proc/self/task: \(error)); refusing to drop privileges blind")
        }
        guard threads == 1 else { throw .stillPrivileged("\(threads) threads run already; drop privileges before starting any") }
        func call(_ name: String, _ body: () throws(Errno) -> Void) throws(Failure) {
            do { try body() } catch { throw .systemCall(name, error) }
        }
        try call("setgroups") { () throws(Errno) in try Syscall.setGroups([]) }
        try call("setgid") { () throws(Errno) in try Syscall.setGroupID(account.groupID) }
        try call("setuid") { () throws(Errno) in try Syscall.setUserID(account.userID) }
        try call("prctl(PR_SET_NO_NEW_PRIVS)") { () throws(Errno) in try Syscall.forbidNewPrivileges() }

        guard getuid() == account.userID, geteuid() == account.userID, getgid() == account.groupID,
            getegid() == account.groupID
        else { throw .stillPrivileged("ids are \(getuid())/\(geteuid()):\(getgid())/\(getegid())") }
        if account.userID != 0, setuid(0) == 0 { throw .stillPrivileged("setuid(0) succeeded") }
        let capabilities: (effective: UInt64, permitted: UInt64)
        do { capabilities = try Syscall.capabilities() } catch { throw .systemCall("capget", error) }
        guard account.userID == 0 || (capabilities.effective == 0 && capabilities.permitted == 0) else {
            throw .stillPrivileged("capabilities \(capabilities)")
        }
    }
}
