import ArgumentParser
import Logging

/// Sets up swift-log for one of the hub's processes.
public enum HubLogging {
    /// Structured entries in the journal when stderr is the journal, plain `StreamLogHandler` lines on stderr
    /// otherwise; either way tokens are redacted and control characters escaped first (`SanitizingLogHandler`).
    /// `identifier` is `sse-supervisor` or `sse-worker`.
    public static func bootstrap(identifier: String, level: Logger.Level) {
        let toJournal = JournalStream.standardErrorIsJournal()
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler =
                toJournal
                ? SanitizingLogHandler(wrapping: JournalLogHandler(identifier: identifier))
                : SanitizingLogHandler(wrapping: StreamLogHandler.standardError(label: label))
            handler.logLevel = level
            return handler
        }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
