import CSystemd
import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// A swift-log handler that writes structured entries to the systemd journal (`sd_journal_sendv(3)`).
/// Used only when stderr is the journal (`JournalStream.standardErrorIsJournal`); otherwise lines go to stderr.
public struct JournalLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    /// `SYSLOG_IDENTIFIER`: `sse-supervisor` or `sse-worker`.
    public let identifier: String

    public init(identifier: String) {
        self.identifier = identifier
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let merged = mergedMetadata(event.metadata)
        let fields = JournalFields.fields(
            level: event.level, message: event.message.description, metadata: merged, identifier: identifier,
            file: event.file, function: event.function, line: event.line)
        Self.send(fields)
    }

    /// One `sd_journal_sendv` call: every field is its own iovec, so values may hold newlines.
    static func send(_ fields: [JournalFields.Field]) {
        var storage = fields.map { Array($0.description.utf8) }
        storage.withUnsafeMutableBufferPointer { buffers in
            var vectors = buffers.indices.map { index in
                buffers[index].withUnsafeMutableBytes { iovec(iov_base: $0.baseAddress, iov_len: $0.count) }
            }
            // The pointers stay valid: `storage` is neither resized nor copied until this call returns.
            _ = sd_journal_sendv(&vectors, CInt(vectors.count))
        }
    }
}

/// Whether this process's stderr is connected to the journal.
public enum JournalStream {
    /// systemd sets `JOURNAL_STREAM=DEVICE:INODE` for a service whose stdout or stderr is the journal; it is
    /// inherited, so it only counts when it names the descriptor that is actually our stderr (`fstat(2)`).
    public static func standardErrorIsJournal(environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        guard let value = environment["JOURNAL_STREAM"], let (device, inode) = parse(value) else { return false }
        var status = stat()
        guard fstat(STDERR_FILENO, &status) == 0 else { return false }
        return UInt64(status.st_dev) == device && UInt64(status.st_ino) == inode
    }

    /// `DEVICE:INODE`, both decimal.
    public static func parse(_ value: String) -> (device: UInt64, inode: UInt64)? {
        let parts = value.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return nil }
        return (device, inode)
    }
}
