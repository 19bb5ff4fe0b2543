import NIOHTTP1

/// The little the supervisor reads of a request before handing it on: method, target, the two headers
/// that may carry a token, and the two a stream's response depends on. It is read from bytes peeked
/// (`MSG_PEEK`) off the socket; anything this reader does not understand is served by the supervisor's
/// own NIO pipeline, which answers it properly.
///
/// Read for every connection on the accept thread, so it works on the bytes and makes a `String` only of
/// what it keeps.
struct RequestHeadPeek: Sendable, Equatable {
    var method: HTTPMethod
    var target: String
    var authorization: String?
    var xAuthToken: String?
    var lastEventID: String?
    var origin: String?

    /// The index just past the blank line that ends the head in `bytes`, if it has arrived.
    static func headLength(in bytes: UnsafeRawBufferPointer) -> Int? {
        guard bytes.count >= 4 else { return nil }
        var index = 3
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "\n") {
                if bytes[index - 1] == UInt8(ascii: "\r"), bytes[index - 2] == UInt8(ascii: "\n"), bytes[index - 3] == UInt8(ascii: "\r") {
                    return index + 1
                }
                index += 1
            } else if bytes[index] == UInt8(ascii: "\r") || bytes[index] == UInt8(ascii: "\n") {
                index += 1
            } else {
                index += 4  // no terminator can end within the next three bytes
            }
        }
        return nil
    }

    /// Parses a complete head (ending in CRLF CRLF); nil when it is not a plain HTTP/1.x request.
    init?(_ head: [UInt8]) {
        guard let parsed = head.withUnsafeBufferPointer({ Self.parse($0) }) else { return nil }
        self = parsed
    }

    private init(method: HTTPMethod, target: String) {
        self.method = method
        self.target = target
    }

    private static func parse(_ head: UnsafeBufferPointer<UInt8>) -> RequestHeadPeek? {
        var lines = HeadLines(head)
        guard let requestLine = lines.next() else { return nil }
        guard let firstSpace = requestLine.firstIndex(of: UInt8(ascii: " ")),
            let lastSpace = requestLine.lastIndex(of: UInt8(ascii: " ")), firstSpace < lastSpace,
            requestLine[(lastSpace + 1)...].starts(with: "HTTP/1.".utf8),
            let method = String(validating: requestLine[..<firstSpace], as: UTF8.self), !method.isEmpty,
            let target = String(validating: requestLine[(firstSpace + 1)..<lastSpace], as: UTF8.self),
            target.utf8.first == UInt8(ascii: "/"), !target.utf8.contains(UInt8(ascii: " "))
        else { return nil }
        var peek = RequestHeadPeek(method: HTTPMethod(rawValue: method), target: target)
        while let line = lines.next() {
            if line.isEmpty { continue }
            // Obsolete line folding or a space before the colon: leave it to the real parser.
            if line.first == UInt8(ascii: " ") || line.first == UInt8(ascii: "\t") { return nil }
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { return nil }
            let name = line[..<colon]
            let value = { String(decoding: trimmed(line[(colon + 1)...]), as: UTF8.self) }
            // The first of each wins, as SwiftNIO's `HTTPHeaders.first(name:)` reads them on the worker's side.
            if name.equalsIgnoringASCIICase("authorization") {
                if peek.authorization == nil { peek.authorization = value() }
            } else if name.equalsIgnoringASCIICase("x-auth-token") {
                if peek.xAuthToken == nil { peek.xAuthToken = value() }
            } else if name.equalsIgnoringASCIICase("last-event-id") {
                if peek.lastEventID == nil { peek.lastEventID = value() }
            } else if name.equalsIgnoringASCIICase("origin") {
                if peek.origin == nil { peek.origin = value() }
            }
        }
        return peek
    }

    private static func trimmed(_ bytes: Slice<UnsafeBufferPointer<UInt8>>) -> Slice<UnsafeBufferPointer<UInt8>> {
        var bytes = bytes
        while let first = bytes.first, first == UInt8(ascii: " ") || first == UInt8(ascii: "\t") { bytes = bytes.dropFirst() }
        while let last = bytes.last, last == UInt8(ascii: " ") || last == UInt8(ascii: "\t") { bytes = bytes.dropLast() }
        return bytes
    }
}

/// The lines of a request head, split at LF with a CR before it dropped.
private struct HeadLines: IteratorProtocol {
    private var rest: Slice<UnsafeBufferPointer<UInt8>>

    init(_ head: UnsafeBufferPointer<UInt8>) { rest = head[...] }

    mutating func next() -> Slice<UnsafeBufferPointer<UInt8>>? {
        guard !rest.isEmpty else { return nil }
        var line: Slice<UnsafeBufferPointer<UInt8>>
        if let newline = rest.firstIndex(of: UInt8(ascii: "\n")) {
            line = rest[..<newline]
            rest = rest[(newline + 1)...]
        } else {
            line = rest
            rest = rest[rest.endIndex...]
        }
        if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
        return line
    }
}

extension Slice<UnsafeBufferPointer<UInt8>> {
    /// Whether these bytes spell `lowercaseName` in any ASCII case.
    fileprivate func equalsIgnoringASCIICase(_ lowercaseName: StaticString) -> Bool {
        guard count == lowercaseName.utf8CodeUnitCount else { return false }
        let name = lowercaseName.utf8Start
        var offset = 0
        for byte in self {
            let lowered = byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
            guard lowered == name[offset] else { return false }
            offset += 1
        }
        return true
    }
}
