import Shared

/// Why a head is refused, and the answer it gets. Every refusal is answered by the supervisor itself.
public struct HeadRefusal: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Reason: String, Sendable, CaseIterable {
        case malformedRequestLine, invalidTarget, unsupportedVersion, bareLineFeed, obsoleteLineFolding
        case whitespaceBeforeColon, invalidFieldName, invalidFieldValue, hostHeader
        case invalidContentLength, contentLengthTooLarge, conflictingFraming, unsupportedTransferEncoding
        case unterminated
    }

    public let reason: Reason

    public init(_ reason: Reason) { self.reason = reason }

    public var description: String { reason.rawValue }

    public var error: APIError {
        switch reason {
        case .malformedRequestLine: APIError(status: 400, "Malformed request line")
        case .invalidTarget: APIError(status: 400, "Invalid request target")
        case .unsupportedVersion: APIError(status: 505, "HTTP version not supported (use HTTP/1.1)")
        case .bareLineFeed: APIError(status: 400, "Header lines must end in CRLF")
        case .obsoleteLineFolding: APIError(status: 400, "Folded header lines are not accepted")
        case .whitespaceBeforeColon: APIError(status: 400, "Whitespace between a header name and its colon")
        case .invalidFieldName: APIError(status: 400, "Malformed header line")
        case .invalidFieldValue: APIError(status: 400, "Control character in a header value")
        case .hostHeader: APIError(status: 400, "An HTTP/1.1 request needs exactly one valid Host header")
        case .invalidContentLength: APIError(status: 400, "Invalid Content-Length")
        case .contentLengthTooLarge: APIError.bodyTooLarge
        case .conflictingFraming: APIError(status: 400, "Conflicting Transfer-Encoding and Content-Length")
        case .unsupportedTransferEncoding: APIError(status: 501, "Transfer-Encoding other than chunked not supported")
        case .unterminated: APIError(status: 400, "Request head not ended by an empty line")
        }
    }
}
