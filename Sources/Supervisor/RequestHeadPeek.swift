import NIOHTTP1

/// The little the supervisor reads of a request before handing it on: method, target and the two headers
/// that may carry a token. It is read from bytes peeked (`MSG_PEEK`) off the socket, so the worker's
/// real HTTP parser (SwiftNIO's) sees the request untouched; anything this reader does not understand
/// is served by the supervisor's own NIO pipeline, which answers it properly.
struct RequestHeadPeek: Sendable, Equatable {
    var method: HTTPMethod
    var target: String
    var authorization: String?
    var xAuthToken: String?

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
        var lines = head.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map { line in
            line.last == UInt8(ascii: "\r") ? line.dropLast() : line
        }
        guard !lines.isEmpty else { return nil }
        let requestLine = lines.removeFirst().split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        guard requestLine.count == 3, requestLine[2].starts(with: Array("HTTP/1.".utf8)),
            let target = String(validating: requestLine[1], as: UTF8.self), target.hasPrefix("/"),
            let method = String(validating: requestLine[0], as: UTF8.self), !method.isEmpty
        else { return nil }
        self.method = HTTPMethod(rawValue: method)
        self.target = target
        for line in lines where !line.isEmpty {
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { return nil }
            // Obsolete line folding or a space before the colon: leave it to the real parser.
            if line.first == UInt8(ascii: " ") || line.first == UInt8(ascii: "\t") { return nil }
            guard let name = String(validating: line[line.startIndex..<colon], as: UTF8.self) else { return nil }
            let rawValue = line[(colon + 1)...]
            let value = String(decoding: rawValue, as: UTF8.self).trimmingWhitespace()
            switch name.lowercased() {
            case "authorization": if authorization == nil { authorization = value }
            case "x-auth-token": if xAuthToken == nil { xAuthToken = value }
            default: break
            }
        }
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var view = Substring(self)
        while let first = view.first, first == " " || first == "\t" { view = view.dropFirst() }
        while let last = view.last, last == " " || last == "\t" { view = view.dropLast() }
        return String(view)
    }
}
