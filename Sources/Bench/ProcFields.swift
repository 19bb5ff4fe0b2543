/// `Name:   value ...` lines of `/proc` files (`/proc/meminfo`, `/proc/PID/status`): the first number after a name.
enum ProcFields {
    static func value(_ name: String, in text: String) -> Int? {
        text.split(separator: "\n").first { $0.hasPrefix(name) }.flatMap { $0.split(separator: " ").dropFirst().first }.flatMap { Int($0) }
    }
}
