import ArgumentParser
import Logging

/// Sets up swift-log for one of the hub's processes.
public enum HubLogging {
    public static func bootstrap(identifier: String, level: Logger.Level) {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
