import Glibc
import Logging
import Shared
import Testing

@Suite("journald logging: field mapping, redaction, JOURNAL_STREAM")
struct JournalLoggingTests {
    @Test func levelsBecomeSyslogPriorities() {
        let expected: [(Logger.Level, Int)] = [
            (.trace, 7), (.debug, 7), (.info, 6), (.notice, 5), (.warning, 4), (.error, 3), (.critical, 2),
        ]
        for (level, priority) in expected { #expect(JournalFields.priority(of: level) == priority, "\(level)") }
    }

    @Test func recordBecomesFields() {
        let fields = JournalFields.fields(
            level: .error, message: "worker exited unexpectedly; restarting it",
            metadata: ["worker": "2", "event": "worker-exited", "user": "alice", "pid": "4242", "retry-after": "1.5"],
            identifier: "sse-supervisor", file: "Supervisor/WorkerPool.swift", function: "workerExited", line: 204)
        #expect(
            fields.map(\.description) == [
                "MESSAGE=worker exited unexpectedly; restarting it",
                "PRIORITY=3",
                "SYSLOG_IDENTIFIER=sse-supervisor",
                "CODE_FILE=Supervisor/WorkerPool.swift",
                "CODE_LINE=204",
                "CODE_FUNC=workerExited",
                "SSE_EVENT=worker-exited",
                "SSE_PID=4242",
                "SSE_RETRY_AFTER=1.5",
                "SSE_USER_ID=alice",
                "SSE_WORKER=2",
            ])
    }

    @Test func fieldNamesAreValidJournalNames() {
        #expect(JournalFields.fieldName(forMetadataKey: "worker") == "SSE_WORKER")
        #expect(JournalFields.fieldName(forMetadataKey: "user") == "SSE_USER_ID")
        #expect(JournalFields.fieldName(forMetadataKey: "event") == "SSE_EVENT")
        #expect(JournalFields.fieldName(forMetadataKey: "x.y z-é") == "SSE_X_Y_Z__")
        let long = JournalFields.fieldName(forMetadataKey: String(repeating: "k", count: 100))
        #expect(long.count == 64)
        #expect(long.allSatisfy { $0.isUppercase || $0.isNumber || $0 == "_" })
    }

    @Test func multilineValuesStayOneField() {
        let fields = JournalFields.fields(level: .info, message: "a\nb", metadata: ["error": "x\ny"], identifier: "sse-worker")
        #expect(fields.first == JournalFields.Field("MESSAGE", "a\nb"))
        #expect(fields.last == JournalFields.Field("SSE_ERROR", "x\ny"))
        #expect(!fields.contains { $0.name == "CODE_FILE" })
    }

    static let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVz"

    @Test func tokensAreRedacted() {
        #expect(LogRedaction.redact("GET /api/sse/stream?token=abc.def&x=1") == "GET /api/sse/stream?token=REDACTED&x=1")
        #expect(LogRedaction.redact("/s?a=1&token=secret") == "/s?a=1&token=REDACTED")
        #expect(LogRedaction.redact("Bearer \(Self.jwt) rejected") == "Bearer REDACTED rejected")
        #expect(LogRedaction.redact("\"\(Self.jwt)\"") == "\"REDACTED\"")
        #expect(LogRedaction.redact("alg none: eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.") == "alg none: REDACTED")
        // An --auth-cookie token, wherever a Cookie header is quoted, whatever the cookie is named.
        #expect(LogRedaction.redact("Cookie: theme=dark; session=\(Self.jwt); lang=en") == "Cookie: theme=dark; session=REDACTED; lang=en")
        #expect(LogRedaction.redact("cookie sse_token=\"\(Self.jwt)\"") == "cookie sse_token=\"REDACTED\"")
        // Not tokens: left alone.
        #expect(LogRedaction.redact("worker 2 ready") == "worker 2 ready")
        #expect(LogRedaction.redact("eyJust.one") == "eyJust.one")
        #expect(LogRedaction.redact("token=") == "token=")
    }

    @Test func theRedactingHandlerRedactsMessageAndEveryMetadataValue() {
        let recorder = RecordingHandler()
        var logger = Logger(label: "test") { _ in SanitizingLogHandler(wrapping: recorder) }
        logger[metadataKey: "target"] = "/api/sse/stream?token=\(Self.jwt)"
        logger.warning(
            "rejected \(Self.jwt)", metadata: ["headers": ["authorization": "Bearer \(Self.jwt)"], "user": "alice"])
        let logged = recorder.events.withLock { $0 }
        #expect(logged.count == 1)
        let event = logged.first
        #expect(event?.message.description == "rejected REDACTED")
        #expect(event?.metadata?["target"] == "/api/sse/stream?token=REDACTED")
        #expect(event?.metadata?["headers"] == ["authorization": "Bearer REDACTED"])
        #expect(event?.metadata?["user"] == "alice")
        let everything = "\(logged)"
        #expect(!everything.contains(Self.jwt))
    }

    @Test func controlCharactersAreEscaped() {
        #expect(LogEscaping.escape("alice") == "alice")
        #expect(LogEscaping.escape("ü 日本 😀 a=b \"q\"") == "ü 日本 😀 a=b \"q\"")
        #expect(LogEscaping.escape("mallory\nFAKE=1") == "mallory\\nFAKE=1")
        #expect(LogEscaping.escape("a\r\n\tb") == "a\\r\\n\\tb")
        #expect(LogEscaping.escape("\u{00}\u{1b}[31m\u{7f}") == "\\u{0}\\u{1b}[31m\\u{7f}")
        #expect(LogEscaping.escape("x\u{85}y\u{2028}z\u{2029}\u{202e}\u{2066}") == "x\\u{85}y\\u{2028}z\\u{2029}\\u{202e}\\u{2066}")
        // A client's literal backslash-n is not mistaken for an escaped line feed.
        #expect(LogEscaping.escape("a\\nb") == "a\\\\nb")
    }

    /// A user id with a line feed (from a signed token, or a publish body's userId) reaches the plain-text
    /// log as one line, written by swift-log's own StreamLogHandler into a pipe.
    @Test func aForgedLineStaysOneLineOnStderr() throws {
        let (readEnd, writeEnd) = try Syscall.pipe()
        defer { Syscall.close(readEnd) }
        let logger = Logger(label: "sse-worker") { label in
            SanitizingLogHandler(wrapping: StreamLogHandler(label: label, stream: PipeStream(fd: writeEnd), metadataProvider: nil))
        }
        let forged = "mallory\n2026-01-01T00:00:00+0000 critical sse-worker: FAKE=1 [Worker] forged\r\u{2028}"
        logger.info("a new stream replaces \(forged)'s previous one", metadata: ["user": "\(forged)", "topics": ["\(forged)"]])
        logger.error("failed", error: ForgedError(text: forged))
        Syscall.close(writeEnd)
        var output: [UInt8] = []
        try withUnsafeTemporaryAllocation(byteCount: 65536, alignment: 1) { buffer in
            while case let count = try Syscall.read(readEnd, into: buffer), count > 0 { output += buffer[0..<count] }
        }
        let text = String(decoding: output, as: UTF8.self)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == 3 && lines.last == "", "two lines and the final newline: \(text)")
        #expect(!text.contains("\r") && !text.contains("\u{2028}"))
        #expect(lines.first?.contains("user=mallory\\n2026-01-01T00:00:00+0000 critical sse-worker: FAKE=1 [Worker] forged\\r\\u{2028}") == true)
        #expect(lines.dropFirst().first?.contains("error.message=mallory\\n") == true, "\(text)")
    }

    /// In the journal every field is its own iovec, so a value could never start another field; escaped, it
    /// also stays one line under `journalctl -o cat`.
    @Test func aForgedFieldStaysOneJournalField() {
        let recorder = RecordingHandler()
        let logger = Logger(label: "test") { _ in SanitizingLogHandler(wrapping: recorder) }
        logger.info("replaced", metadata: ["user": "mallory\nFAKE=1\nSSE_EVENT=worker-hung"])
        let event = recorder.events.withLock { $0.first }
        let fields = JournalFields.fields(
            level: .info, message: event?.message.description ?? "", metadata: event?.metadata ?? [:], identifier: "sse-worker")
        #expect(fields.map(\.name) == ["MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "SSE_USER_ID"])
        #expect(fields.last?.value == "mallory\\nFAKE=1\\nSSE_EVENT=worker-hung")
        #expect(fields.allSatisfy { !$0.description.contains("\n") })
    }

    @Test func journalStreamNamesADeviceAndInode() {
        #expect(JournalStream.parse("8:12345")! == (8, 12345))
        #expect(JournalStream.parse("8:") == nil)
        #expect(JournalStream.parse("x:1") == nil)
        #expect(JournalStream.parse("1:2:3") == nil)
        // Inherited from a unit but not our stderr: not the journal.
        #expect(!JournalStream.standardErrorIsJournal(environment: ["JOURNAL_STREAM": "1:1"]))
        #expect(!JournalStream.standardErrorIsJournal(environment: [:]))
    }
}

import Synchronization

/// Writes each log line into a pipe, as StreamLogHandler writes to stderr.
struct PipeStream: TextOutputStream, Sendable {
    let fd: CInt
    mutating func write(_ string: String) {
        var bytes = Array(string.utf8)
        while !bytes.isEmpty {
            let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            guard written > 0 else { return }
            bytes.removeFirst(written)
        }
    }
}

struct ForgedError: Error, CustomStringConvertible {
    var text: String
    var description: String { text }
}

/// Keeps what it is asked to log.
final class RecordingHandler: LogHandler, Sendable {
    let events = Mutex<[LogEvent]>([])
    var metadata: Logger.Metadata {
        get { [:] }
        set {}
    }
    var logLevel: Logger.Level {
        get { .trace }
        set {}
    }
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { nil }
        set {}
    }
    func log(event: LogEvent) { events.withLock { $0.append(event) } }
}
