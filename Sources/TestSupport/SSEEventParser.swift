/// One dispatched server-sent event, as a client sees it.
public struct SSEEvent: Sendable, Hashable {
    public var event: String
    public var data: String
    public var id: String?

    public init(event: String, data: String, id: String? = nil) {
        self.event = event
        self.data = data
        self.id = id
    }
}

/// An incremental `text/event-stream` parser (the client side of the WHATWG algorithm), for the project's
/// own clients: the test suite and the load tool. Comments are counted, not returned.
public struct SSEEventParser: Sendable {
    private var pendingLine: [UInt8] = []
    private var event = ""
    private var dataLines: [String] = []
    private var id: String?
    private var skipLineFeed = false
    /// Comment lines seen (`:heartbeat` among them).
    public private(set) var comments: [String] = []

    public init() {}

    /// Feeds bytes; returns the events they completed.
    public mutating func feed<Bytes: Sequence>(_ bytes: Bytes) -> [SSEEvent] where Bytes.Element == UInt8 {
        var events: [SSEEvent] = []
        for byte in bytes {
            if skipLineFeed {
                skipLineFeed = false
                if byte == UInt8(ascii: "\n") { continue }
            }
            if byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") {
                skipLineFeed = byte == UInt8(ascii: "\r")
                if let dispatched = processLine() { events.append(dispatched) }
                pendingLine.removeAll(keepingCapacity: true)
            } else {
                pendingLine.append(byte)
            }
        }
        return events
    }

    private mutating func processLine() -> SSEEvent? {
        if pendingLine.isEmpty {
            defer {
                event = ""
                dataLines = []
            }
            guard !dataLines.isEmpty else { return nil }
            return SSEEvent(event: event.isEmpty ? "message" : event, data: dataLines.joined(separator: "\n"), id: id)
        }
        let line = String(decoding: pendingLine, as: UTF8.self)
        if line.hasPrefix(":") {
            comments.append(String(line.dropFirst()))
            return nil
        }
        let field: Substring
        var value: Substring
        if let colon = line.firstIndex(of: ":") {
            field = line[..<colon]
            value = line[line.index(after: colon)...]
            if value.hasPrefix(" ") { value = value.dropFirst() }
        } else {
            field = line[...]
            value = ""
        }
        switch field {
        case "event": event = String(value)
        case "data": dataLines.append(String(value))
        case "id": id = String(value)
        default: break
        }
        return nil
    }
}
