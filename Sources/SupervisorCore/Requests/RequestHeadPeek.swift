#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOHTTP1

/// The little the supervisor reads of a request before handing it on: method, version, target, the three headers
/// that may carry a token, the two a stream's response depends on, and its host. It is read from bytes peeked
/// (`MSG_PEEK`) off the socket, before authentication, so it accepts only what RFC 9112 allows *and* SwiftNIO's
/// `HTTPRequestDecoder` (which parses the same bytes afterwards, in the supervisor or a worker) accepts;
/// everything else is refused with a `HeadRefusal`, never passed on for another parser to read differently.
/// The `request-head` fuzz target holds it to that (docs/operations.md, "Fuzzing").
///
/// Read for every connection on the accept thread, so it works on the bytes and makes a `String` only of
/// what it keeps.
public struct RequestHeadPeek: Sendable, Equatable {
    public var method: HTTPMethod
    public var version: HTTPVersion
    public var target: String
    public var authorization: String?
    public var xAuthToken: String?
    public var lastEventID: String?
    public var origin: String?
    /// The `Cookie` header (one, as HTTP/1.1 clients send it), read for `--auth-cookie`.
    public var cookie: String?
    /// The `Host` header: a cookie token from a page of this very host needs no `--cors-origin`.
    public var host: String?

    public init(
        method: HTTPMethod, version: HTTPVersion, target: String, authorization: String? = nil, xAuthToken: String? = nil,
        lastEventID: String? = nil, origin: String? = nil, cookie: String? = nil, host: String? = nil
    ) {
        self.method = method
        self.version = version
        self.target = target
        self.authorization = authorization
        self.xAuthToken = xAuthToken
        self.lastEventID = lastEventID
        self.origin = origin
        self.cookie = cookie
        self.host = host
    }

    /// The index just past the empty line that ends the head in `bytes`, if it has arrived.
    ///
    /// A line may end in a bare LF here, although `parse` refuses that: such a head is then answered at once
    /// instead of waiting for a CRLF CRLF that never comes. An empty first line also counts as an end (refused too).
    public static func headLength(in bytes: UnsafeRawBufferPointer) -> Int? {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return nil }
        if bytes[0] == ASCII.lineFeed { return 1 }
        if bytes[0] == ASCII.carriageReturn, bytes.count > 1, bytes[1] == ASCII.lineFeed { return 2 }
        var from = 0
        // memchr: a head is a few lines of mostly long values, so jumping from line end to line end is the fast path.
        while from < bytes.count, let found = memchr(base + from, CInt(ASCII.lineFeed), bytes.count - from) {
            let next = base.distance(to: UnsafeRawPointer(found)) + 1
            guard next < bytes.count else { return nil }
            if bytes[next] == ASCII.lineFeed { return next + 1 }
            if bytes[next] == ASCII.carriageReturn {
                guard next + 1 < bytes.count else { return nil }
                if bytes[next + 1] == ASCII.lineFeed { return next + 2 }
            }
            from = next
        }
        return nil
    }

    /// Parses a whole head (as `headLength` delimits it; anything after its empty line is ignored).
    public static func parse(_ head: UnsafeRawBufferPointer) throws(HeadRefusal) -> RequestHeadPeek {
        var parser = HeadParser(head)
        return try parser.parse()
    }

    public static func parse(_ head: [UInt8]) throws(HeadRefusal) -> RequestHeadPeek {
        try head.withUnsafeBytes { HeadParser.parseResult($0) }.get()
    }
}

/// One pass over a head: the request line, then each header line, each checked as it is read.
private struct HeadParser {
    private let bytes: UnsafeRawBufferPointer
    private var position = 0

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    static func parseResult(_ bytes: UnsafeRawBufferPointer) -> Result<RequestHeadPeek, HeadRefusal> {
        var parser = HeadParser(bytes)
        do { return .success(try parser.parse()) } catch { return .failure(error) }
    }

    /// The next line, without its CRLF; nil past the end.
    private mutating func nextLine() throws(HeadRefusal) -> Range<Int>? {
        guard position < bytes.count, let base = bytes.baseAddress else { return nil }
        guard let found = memchr(base + position, CInt(ASCII.lineFeed), bytes.count - position) else {
            throw HeadRefusal(.unterminated)
        }
        let lineFeed = base.distance(to: UnsafeRawPointer(found))
        guard lineFeed > position, bytes[lineFeed - 1] == ASCII.carriageReturn else { throw HeadRefusal(.bareLineFeed) }
        defer { position = lineFeed + 1 }
        return position..<(lineFeed - 1)
    }

    /// The framing headers' values lose only trailing spaces, not tabs: llhttp reads them so (a tab there is an error
    /// to it), and the supervisor must not accept a framing that SwiftNIO refuses.
    private func trimmingTrailingSpaces(_ value: Range<Int>) -> Range<Int> {
        var end = value.upperBound
        while end > value.lowerBound, bytes[end - 1] == ASCII.space { end -= 1 }
        return value.lowerBound..<end
    }

    private struct Framing {
        var hosts = 0
        var contentLength: Range<Int>?
        var transferEncoding: Range<Int>?
    }

    mutating func parse() throws(HeadRefusal) -> RequestHeadPeek {
        guard let requestLine = try nextLine() else { throw HeadRefusal(.unterminated) }
        var peek = try parseRequestLine(requestLine)
        var framing = Framing()
        while true {
            guard let line = try nextLine() else { throw HeadRefusal(.unterminated) }
            if line.isEmpty { break }
            try parseField(line, into: &peek, framing: &framing)
        }
        try check(framing, version: peek.version)
        return peek
    }

    // MARK: request line: method SP request-target SP HTTP-version (RFC 9112 §3)

    private func parseRequestLine(_ line: Range<Int>) throws(HeadRefusal) -> RequestHeadPeek {
        var index = line.lowerBound
        while index < line.upperBound, ASCIISet.token.contains(bytes[index]) { index += 1 }
        guard index > line.lowerBound, index < line.upperBound, bytes[index] == ASCII.space else {
            throw HeadRefusal(.malformedRequestLine)
        }
        let method = Self.method(UnsafeRawBufferPointer(rebasing: bytes[line.lowerBound..<index]))
        let targetStart = index + 1
        // "HTTP/1.1" is the last 8 bytes, after one space.
        let versionStart = line.upperBound - 8
        guard versionStart > targetStart, bytes[versionStart - 1] == ASCII.space else { throw HeadRefusal(.malformedRequestLine) }
        let version = try parseVersion(versionStart)
        let target = targetStart..<(versionStart - 1)
        try validateTarget(target)
        return RequestHeadPeek(
            method: method, version: version, target: String(decoding: UnsafeRawBufferPointer(rebasing: bytes[target]), as: UTF8.self))
    }

    private static func method(_ name: UnsafeRawBufferPointer) -> HTTPMethod {
        // The routes' methods without building a String; any other through NIO's own mapping.
        if name.elementsEqual("GET".utf8) { return .GET }
        if name.elementsEqual("POST".utf8) { return .POST }
        // The one method llhttp spells otherwise than NIO's `HTTPMethod(rawValue:)` does.
        if name.elementsEqual("M-SEARCH".utf8) { return .MSEARCH }
        return HTTPMethod(rawValue: String(decoding: name, as: UTF8.self))
    }

    private func parseVersion(_ start: Int) throws(HeadRefusal) -> HTTPVersion {
        guard UnsafeRawBufferPointer(rebasing: bytes[start..<(start + 5)]).elementsEqual("HTTP/".utf8),
            ASCII.isDigit(bytes[start + 5]), bytes[start + 6] == UInt8(ascii: "."), ASCII.isDigit(bytes[start + 7])
        else { throw HeadRefusal(.malformedRequestLine) }
        let major = Int(bytes[start + 5] - UInt8(ascii: "0"))
        let minor = Int(bytes[start + 7] - UInt8(ascii: "0"))
        guard major == 1, minor <= 1 else { throw HeadRefusal(.unsupportedVersion) }
        return HTTPVersion(major: major, minor: minor)
    }

    /// origin-form (`/path?query`), absolute-form (`http://host/path?query`, RFC 9112 §3.2.2: a server must accept
    /// it), or `*`. Authority-form (CONNECT's) has no route here, fragments are not part of a target, and
    /// userinfo in an http URI is treated as an error (RFC 9110 §4.2.4).
    private func validateTarget(_ target: Range<Int>) throws(HeadRefusal) {
        if bytes[target.lowerBound] == ASCII.slash {
            return try validate(target, allowed: ASCIISet.target)
        }
        if target.count == 1, bytes[target.lowerBound] == ASCII.asterisk { return }
        var index = target.lowerBound
        for letter in "http".utf8 {
            guard index < target.upperBound, bytes[index] | 0x20 == letter else { throw HeadRefusal(.invalidTarget) }
            index += 1
        }
        if index < target.upperBound, bytes[index] | 0x20 == UInt8(ascii: "s") { index += 1 }
        for byte in "://".utf8 {
            guard index < target.upperBound, bytes[index] == byte else { throw HeadRefusal(.invalidTarget) }
            index += 1
        }
        let authorityStart = index
        while index < target.upperBound, bytes[index] != ASCII.slash, bytes[index] != ASCII.question { index += 1 }
        guard index > authorityStart else { throw HeadRefusal(.invalidTarget) }
        try validate(authorityStart..<index, allowed: ASCIISet.authority)
        try validate(index..<target.upperBound, allowed: ASCIISet.target)
    }

    /// Every byte in `allowed`, and each `%` followed by two hex digits.
    private func validate(_ range: Range<Int>, allowed: ASCIISet) throws(HeadRefusal) {
        var index = range.lowerBound
        while index < range.upperBound {
            let byte = bytes[index]
            guard allowed.contains(byte) else { throw HeadRefusal(.invalidTarget) }
            if byte == ASCII.percent {
                guard index + 2 < range.upperBound, ASCII.isHexDigit(bytes[index + 1]), ASCII.isHexDigit(bytes[index + 2]) else {
                    throw HeadRefusal(.invalidTarget)
                }
                index += 2
            }
            index += 1
        }
    }

    // MARK: header fields: field-name ":" OWS field-value OWS (RFC 9112 §5)

    private func parseField(_ line: Range<Int>, into peek: inout RequestHeadPeek, framing: inout Framing) throws(HeadRefusal) {
        // A line starting with whitespace continues the previous one (obs-fold) or, first of all, hides a field
        // from parsers that skip it: RFC 9112 §5.2 and §2.2 allow refusing both.
        if ASCII.isWhitespace(bytes[line.lowerBound]) { throw HeadRefusal(.obsoleteLineFolding) }
        var colon = line.lowerBound
        while colon < line.upperBound, ASCIISet.token.contains(bytes[colon]) { colon += 1 }
        guard colon < line.upperBound, bytes[colon] == ASCII.colon, colon > line.lowerBound else {
            // No whitespace is allowed between a name and its colon (RFC 9112 §5.1): a classic smuggling vector.
            var afterName = colon
            while afterName < line.upperBound, ASCII.isWhitespace(bytes[afterName]) { afterName += 1 }
            let colonAfterWhitespace = afterName > colon && afterName < line.upperBound && bytes[afterName] == ASCII.colon
            throw HeadRefusal(colon > line.lowerBound && colonAfterWhitespace ? .whitespaceBeforeColon : .invalidFieldName)
        }
        var valueStart = colon + 1
        var valueEnd = line.upperBound
        for index in valueStart..<valueEnd where !ASCII.isFieldValueByte(bytes[index]) {
            throw HeadRefusal(.invalidFieldValue)
        }
        while valueStart < valueEnd, ASCII.isWhitespace(bytes[valueStart]) { valueStart += 1 }
        while valueEnd > valueStart, ASCII.isWhitespace(bytes[valueEnd - 1]) { valueEnd -= 1 }
        let name = UnsafeRawBufferPointer(rebasing: bytes[line.lowerBound..<colon])
        let value = valueStart..<valueEnd
        // The first of each wins, as SwiftNIO's `HTTPHeaders.first(name:)` reads them on the worker's side.
        switch name.count {
        case 4 where name.equalsIgnoringASCIICase("host"):
            try validateHost(value)
            framing.hosts += 1
            if peek.host == nil { peek.host = string(value) }
        case 6 where name.equalsIgnoringASCIICase("origin"):
            if peek.origin == nil { peek.origin = string(value) }
        case 6 where name.equalsIgnoringASCIICase("cookie"):
            if peek.cookie == nil { peek.cookie = string(value) }
        case 12 where name.equalsIgnoringASCIICase("x-auth-token"):
            if peek.xAuthToken == nil { peek.xAuthToken = string(value) }
        case 13 where name.equalsIgnoringASCIICase("authorization"):
            if peek.authorization == nil { peek.authorization = string(value) }
        case 13 where name.equalsIgnoringASCIICase("last-event-id"):
            if peek.lastEventID == nil { peek.lastEventID = string(value) }
        case 14 where name.equalsIgnoringASCIICase("content-length"):
            guard framing.contentLength == nil else { throw HeadRefusal(.invalidContentLength) }
            framing.contentLength = valueStart..<line.upperBound
        case 17 where name.equalsIgnoringASCIICase("transfer-encoding"):
            guard framing.transferEncoding == nil else { throw HeadRefusal(.unsupportedTransferEncoding) }
            framing.transferEncoding = valueStart..<line.upperBound
        default:
            break
        }
    }

    private func validateHost(_ host: Range<Int>) throws(HeadRefusal) {
        for index in host where !ASCIISet.authority.contains(bytes[index]) { throw HeadRefusal(.hostHeader) }
    }

    private func string(_ range: Range<Int>) -> String {
        String(decoding: UnsafeRawBufferPointer(rebasing: bytes[range]), as: UTF8.self)
    }

    /// Host (RFC 9112 §3.2) and message framing (§6): what a later parser could read as a different request.
    private func check(_ framing: Framing, version: HTTPVersion) throws(HeadRefusal) {
        if framing.hosts > 1 || (version.minor == 1 && framing.hosts == 0) { throw HeadRefusal(.hostHeader) }
        if let transferEncoding = framing.transferEncoding.map(trimmingTrailingSpaces) {
            // HTTP/1.0 has no transfer codings: its framing would be read two ways (§6.1).
            guard framing.contentLength == nil, version.minor == 1 else { throw HeadRefusal(.conflictingFraming) }
            let coding = UnsafeRawBufferPointer(rebasing: bytes[transferEncoding])
            guard coding.count == 7, coding.equalsIgnoringASCIICase("chunked") else {
                throw HeadRefusal(.unsupportedTransferEncoding)
            }
        }
        if let contentLength = framing.contentLength.map(trimmingTrailingSpaces) {
            guard !contentLength.isEmpty, contentLength.allSatisfy({ ASCII.isDigit(bytes[$0]) }) else {
                throw HeadRefusal(.invalidContentLength)
            }
            // Far past the 64 KiB a body may have, and short of any integer overflow.
            guard contentLength.count <= 18 else { throw HeadRefusal(.contentLengthTooLarge) }
        }
    }
}

extension UnsafeRawBufferPointer {
    /// Whether these bytes spell `lowercaseName` in any ASCII case (the caller has checked the length).
    fileprivate func equalsIgnoringASCIICase(_ lowercaseName: StaticString) -> Bool {
        let name = lowercaseName.utf8Start
        for offset in 0..<count {
            let byte = self[offset]
            let lowered = byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
            guard lowered == name[offset] else { return false }
        }
        return true
    }
}
