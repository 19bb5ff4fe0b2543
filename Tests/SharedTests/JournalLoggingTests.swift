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
        // Not tokens: left alone.
        #expect(LogRedaction.redact("worker 2 ready") == "worker 2 ready")
        #expect(LogRedaction.redact("eyJust.one") == "eyJust.one")
        #expect(LogRedaction.redact("token=") == "token=")
    }

    @Test func theRedactingHandlerRedactsMessageAndEveryMetadataValue() {
        let recorder = RecordingHandler()
        var logger = Logger(label: "test") { _ in RedactingLogHandler(wrapping: recorder) }
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
