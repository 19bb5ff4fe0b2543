import Logging

/// How one log record becomes a journal entry: the fields `sd_journal_sendv(3)` is given.
///
/// `journalctl -u sse-hub SSE_WORKER=2` and `journalctl -u sse-hub SSE_EVENT=worker-exited` rely on these names.
public enum JournalFields {
    public struct Field: Sendable, Hashable, CustomStringConvertible {
        public var name: String
        public var value: String

        public init(_ name: String, _ value: String) {
            self.name = name
            self.value = value
        }

        /// `NAME=value`, as the journal protocol takes it (values may span lines).
        public var description: String { "\(name)=\(value)" }
    }

    /// Metadata keys with a name of their own; any other key `k` becomes `SSE_K`.
    static let renamed: [String: String] = ["worker": "SSE_WORKER", "user": "SSE_USER_ID", "event": "SSE_EVENT"]

    /// The entry for one record: `MESSAGE`, `PRIORITY`, `SYSLOG_IDENTIFIER`, the source location, then
    /// one `SSE_*` field per metadata key, sorted by name (values are rendered as swift-log prints them).
    public static func fields(
        level: Logger.Level, message: String, metadata: Logger.Metadata, identifier: String,
        file: String = "", function: String = "", line: UInt = 0
    ) -> [Field] {
        var fields = [
            Field("MESSAGE", message),
            Field("PRIORITY", String(priority(of: level))),
            Field("SYSLOG_IDENTIFIER", identifier),
        ]
        if !file.isEmpty {
            fields += [Field("CODE_FILE", file), Field("CODE_LINE", String(line)), Field("CODE_FUNC", function)]
        }
        fields += metadata.map { Field(fieldName(forMetadataKey: $0.key), $0.value.description) }
            .sorted { $0.name < $1.name }
        return fields
    }

    /// syslog(3) priorities: swift-log has no `alert` or `emergency`, and both its trace and debug are `debug`.
    public static func priority(of level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// `SSE_` and the key in upper case, anything but letters and digits as `_`; journal field names are
    /// `[A-Z0-9_]`, at most 64 characters.
    public static func fieldName(forMetadataKey key: String) -> String {
        if let name = renamed[key] { return name }
        let body = key.uppercased().unicodeScalars.map { scalar -> Character in
            ("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar) ? Character(scalar) : "_"
        }
        return String(("SSE_" + String(body)).prefix(64))
    }
}
