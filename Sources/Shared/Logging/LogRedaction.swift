import Logging

/// Masks credentials before anything is logged: a token must never reach a log line, whatever a message
/// or a metadata value happens to quote (a request target, a header, an error description).
public enum LogRedaction {
    public static let mask = "REDACTED"

    /// `text` with every `token=VALUE` (query strings, form bodies) and every JWT-shaped word
    /// (`eyJ…` `.` `…` `.` `…`, whether or not it is labelled) replaced by `REDACTED`.
    public static func redact(_ text: String) -> String {
        // Fast path: most lines hold neither marker.
        guard text.contains("token=") || text.contains("eyJ") else { return text }
        let bytes = Array(text.utf8)
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            if let end = jwtEnd(bytes, from: index) {
                output += mask.utf8
                index = end
            } else if hasPrefix(bytes, "token=", at: index) {
                output += "token=".utf8
                index += 6
                let start = index
                while index < bytes.count, !isValueTerminator(bytes[index]) { index += 1 }
                if index > start { output += mask.utf8 }
            } else {
                output.append(bytes[index])
                index += 1
            }
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// The value with every string in it redacted.
    public static func redact(_ value: Logger.MetadataValue) -> Logger.MetadataValue {
        switch value {
        case .string(let text): .string(redact(text))
        case .stringConvertible(let convertible): .string(redact(convertible.description))
        case .array(let values): .array(values.map(redact))
        case .dictionary(let values): .dictionary(values.mapValues(redact))
        }
    }

    public static func redact(_ metadata: Logger.Metadata) -> Logger.Metadata {
        metadata.mapValues(redact)
    }

    /// Where a JWT starting at `start` ends: `eyJ` (base64url of `{"`), then three base64url segments
    /// separated by dots (the signature may be empty, as with `alg: none`). Nil when there is none.
    private static func jwtEnd(_ bytes: [UInt8], from start: Int) -> Int? {
        guard hasPrefix(bytes, "eyJ", at: start), start == 0 || !isBase64URL(bytes[start - 1]) else { return nil }
        var index = start
        for segment in 0..<3 {
            let segmentStart = index
            while index < bytes.count, isBase64URL(bytes[index]) { index += 1 }
            if segment < 2 {
                guard index > segmentStart, index < bytes.count, bytes[index] == UInt8(ascii: ".") else { return nil }
                index += 1
            }
        }
        return index
    }

    private static func hasPrefix(_ bytes: [UInt8], _ prefix: StaticString, at index: Int) -> Bool {
        let count = prefix.utf8CodeUnitCount
        guard index + count <= bytes.count else { return false }
        return prefix.withUTF8Buffer { Array($0) == Array(bytes[index..<(index + count)]) }
    }

    private static func isBase64URL(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "-"), UInt8(ascii: "_"):
            true
        default: false
        }
    }

    /// What ends a `token=` value: the next parameter, whitespace, or a quote or bracket around it.
    private static func isValueTerminator(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "&"), UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\r"), UInt8(ascii: "\n"),
            UInt8(ascii: "\""), UInt8(ascii: "'"), UInt8(ascii: ","), UInt8(ascii: ";"), UInt8(ascii: ")"), UInt8(ascii: "]"),
            UInt8(ascii: "}"), UInt8(ascii: ">"), UInt8(ascii: "#"):
            true
        default: false
        }
    }
}

/// Wraps the handler that writes (journal or stderr) and sanitizes every message and metadata value first:
/// tokens are redacted (`LogRedaction`), then control characters escaped (`LogEscaping`), so no value can
/// leak a credential or forge a line. It owns the metadata, so what the inner handler receives has always
/// been through both; an attached error is folded into the metadata the same way.
public struct SanitizingLogHandler<Inner: LogHandler>: LogHandler {
    private var inner: Inner
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?

    public init(wrapping inner: Inner) {
        self.inner = inner
        self.inner.metadata = [:]
        // Taken over, not duplicated (and not set on handlers without provider support, which complain).
        if let provider = inner.metadataProvider {
            self.metadataProvider = provider
            self.inner.metadataProvider = nil
        }
    }

    public var logLevel: Logger.Level {
        get { inner.logLevel }
        set { inner.logLevel = newValue }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = mergedMetadata(event.metadata)
        var sanitized = event
        if let error = event.error {
            // StreamLogHandler would print the error's description as it is.
            merged["error.message"] = "\(error)"
            merged["error.type"] = "\(String(reflecting: type(of: error)))"
            sanitized.error = nil
        }
        sanitized.message = "\(LogEscaping.escape(LogRedaction.redact(event.message.description)))"
        sanitized.metadata = merged.isEmpty ? nil : LogEscaping.escape(LogRedaction.redact(merged))
        inner.log(event: sanitized)
    }
}

extension LogHandler {
    /// The handler's metadata, then its provider's, then the entry's own: later ones win.
    func mergedMetadata(_ explicit: Logger.Metadata?) -> Logger.Metadata {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { $1 } }
        if let explicit { merged.merge(explicit) { $1 } }
        return merged
    }
}
