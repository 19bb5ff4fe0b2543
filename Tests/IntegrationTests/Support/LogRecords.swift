/// One line of the hub's stderr log, as swift-log's `StreamLogHandler` writes it (`TIME LEVEL LABEL: k=v k=v [SOURCE]
/// message`), read for its level and metadata: tests match what a line records (its `event=`, its keys), not how its
/// message is worded.
struct LogRecord: Sendable {
    var level: Substring
    /// The metadata, `k=v` pairs sorted by key, with a space before and after each pair.
    var metadata: String

    init?(_ line: Substring) {
        let parts = line.split(separator: " ", maxSplits: 2)
        guard parts.count == 3, let colon = parts[2].range(of: ": ") else { return nil }
        level = parts[1]
        let rest = parts[2][colon.lowerBound...].dropFirst()
        // The metadata ends where the source, a module name in brackets, begins.
        guard let source = rest.firstMatch(of: #/ \[[A-Za-z0-9_]+\] /#) else { return nil }
        metadata = String(rest[..<source.range.lowerBound]) + " "
    }

    /// Whether the line has each of `fields` (`key=value`, the whole value) in its metadata.
    func has(_ fields: [String]) -> Bool { fields.allSatisfy { metadata.contains(" \($0) ") } }

    /// The value of `key` in the metadata, if the line has it.
    func value(of key: String) -> Substring? {
        guard let start = metadata.range(of: " \(key)=") else { return nil }
        let rest = metadata[start.upperBound...]
        return rest[..<(rest.firstIndex(of: " ") ?? rest.endIndex)]
    }
}

extension HubProcess {
    var records: [LogRecord] { log.split(separator: "\n").compactMap(LogRecord.init) }

    /// The lines logged with every one of `fields` (`"event=worker-exited"`, `"worker=1"`), at `level` if given.
    func logged(_ fields: String..., level: String? = nil) -> [LogRecord] {
        records.filter { record in record.has(fields) && (level.map { record.level == $0 } ?? true) }
    }
}
