import NIOCore

/// The `text/event-stream` wire format (WHATWG HTML, "Server-sent events").
public enum SSEWireFormat {
    /// `event: <name>\ndata: <line>\n…\n\n`. `data` is split into `data:` lines at CR, LF and CRLF, the only line
    /// ends of the format: compact JSON never has one, but raw text might, and an unsplit one would end the field
    /// early. Nothing else splits a line: U+2028, U+2029 and U+0085 are ordinary characters to an EventSource, and
    /// splitting at them would put a line break into a JSON string that the browser then cannot parse.
    public static func event(_ name: String, data: String, id: String? = nil, into buffer: inout ByteBuffer) {
        if let id {
            buffer.writeStaticString("id: ")
            buffer.writeString(id)
            buffer.writeStaticString("\n")
        }
        buffer.writeStaticString("event: ")
        buffer.writeString(name)
        buffer.writeStaticString("\n")
        var utf8 = data.utf8[...]
        while true {
            buffer.writeStaticString("data: ")
            guard let lineEnd = utf8.firstIndex(where: { $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "\r") }) else {
                buffer.writeBytes(utf8)
                buffer.writeStaticString("\n")
                break
            }
            buffer.writeBytes(utf8[..<lineEnd])
            buffer.writeStaticString("\n")
            let isCRLF = utf8[lineEnd] == UInt8(ascii: "\r") && utf8.index(after: lineEnd) < utf8.endIndex
                && utf8[utf8.index(after: lineEnd)] == UInt8(ascii: "\n")
            utf8 = utf8[utf8.index(lineEnd, offsetBy: isCRLF ? 2 : 1)...]
        }
        buffer.writeStaticString("\n")
    }

    public static func event(_ name: String, data: String, id: String? = nil) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(name.utf8.count + data.utf8.count + 24)
        event(name, data: data, id: id, into: &buffer)
        return buffer
    }

    /// `retry: <milliseconds>`: how long a client waits before it reconnects. The first line of every stream.
    public static func retry(_ milliseconds: Int, into buffer: inout ByteBuffer) {
        buffer.writeStaticString("retry: ")
        buffer.writeString(String(milliseconds))
        buffer.writeStaticString("\n")
    }

    /// A comment line, which clients ignore: used to keep idle connections open through proxies.
    public static func comment(_ text: String) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeStaticString(":")
        buffer.writeString(text)
        buffer.writeStaticString("\n\n")
        return buffer
    }

    public static let heartbeat = comment("heartbeat")

    /// `bytes` as one chunk of a `Transfer-Encoding: chunked` body (RFC 9112 §7.1): streams write frames
    /// chunk-encoded once, so every stream shares the same bytes and needs no HTTP encoder of its own.
    public static func chunk(_ bytes: ByteBuffer) -> ByteBuffer {
        var chunk = ByteBuffer()
        writeChunk(bytes, into: &chunk)
        return chunk
    }

    /// Appends `bytes` to `buffer` as one chunk of a chunked HTTP body.
    public static func writeChunk(_ bytes: ByteBuffer, into buffer: inout ByteBuffer) {
        buffer.reserveCapacity(minimumWritableBytes: bytes.readableBytes + 12)
        buffer.writeString(String(bytes.readableBytes, radix: 16))
        buffer.writeStaticString("\r\n")
        buffer.writeImmutableBuffer(bytes)
        buffer.writeStaticString("\r\n")
    }

    /// The last chunk: ends a chunked body.
    public static let lastChunk = ByteBuffer(string: "0\r\n\r\n")
}

/// Names that travel in SSE fields and URLs: a restricted alphabet keeps them safe in both.
public enum HubName {
    public static let maximumEventLength = 64
    public static let maximumTopicLength = 128

    public static func isValidEvent(_ name: String) -> Bool { isValid(name, maximumLength: maximumEventLength) }
    public static func isValidTopic(_ name: String) -> Bool { isValid(name, maximumLength: maximumTopicLength) }

    /// 1…`maximumLength` characters of `[A-Za-z0-9_.:-]`.
    static func isValid(_ name: String, maximumLength: Int) -> Bool {
        let bytes = name.utf8
        guard !bytes.isEmpty, bytes.count <= maximumLength else { return false }
        return bytes.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "."),
                UInt8(ascii: ":"), UInt8(ascii: "-"):
                true
            default:
                false
            }
        }
    }
}
