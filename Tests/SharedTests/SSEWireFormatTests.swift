import Foundation
import NIOCore
import Shared
import TestSupport
import Testing

@Suite struct SSEWireFormatTests {
    @Test func anEventIsNameThenDataThenABlankLine() {
        let frame = SSEWireFormat.event("newEvent", data: #"{"a":1}"#)
        #expect(String(buffer: frame) == "event: newEvent\ndata: {\"a\":1}\n\n")
    }

    @Test func anIdComesFirstWhenGiven() {
        #expect(String(buffer: SSEWireFormat.event("e", data: "1", id: "7")) == "id: 7\nevent: e\ndata: 1\n\n")
    }

    @Test func rawTextWithLineBreaksBecomesSeveralDataLines() {
        let frame = SSEWireFormat.event("note", data: "line one\nline two\r\nline three")
        #expect(String(buffer: frame) == "event: note\ndata: line one\ndata: line two\ndata: line three\n\n")
        var parser = SSEEventParser()
        #expect(parser.feed(frame.readableBytesView) == [SSEEvent(event: "note", data: "line one\nline two\nline three")])
    }

    /// Only CR, LF and CRLF end an SSE line. U+2028, U+2029 and U+0085 in a string used to split its `data:` line,
    /// so the browser joined the halves with a newline inside a JSON string and `JSON.parse` failed.
    @Test func unicodeLineSeparatorsStayInsideOneDataLine() throws {
        let text = "a\u{2028}b\u{2029}c\u{0085}d\u{000B}e\u{000C}f"
        let data = HubJSON.encode(JSONValue.object(["text": .string(text)]))
        #expect(data.unicodeScalars.contains("\u{2028}"), "JSON leaves U+2028 as it is, so the writer must not split at it")
        let frame = String(buffer: SSEWireFormat.event("newPost", data: data))
        #expect(frame == "event: newPost\ndata: \(data)\n\n")
        var parser = SSEEventParser()
        let events = parser.feed(Array(frame.utf8))
        #expect(events.count == 1)
        let decoded = try JSONDecoder().decode([String: String].self, from: Data(events[0].data.utf8))
        #expect(decoded["text"] == text)
        // The ids and names a worker writes itself go through the same writer.
        let connected = ConnectedEventData(userId: "u\u{2028}1").json
        #expect(String(buffer: SSEWireFormat.event("connected", data: connected)).split(separator: "\n").count == 2)
        // Raw text keeps CR, LF and CRLF as line ends, each one only.
        #expect(String(buffer: SSEWireFormat.event("e", data: "1\r\n2\r3\n4\n")) == "event: e\ndata: 1\ndata: 2\ndata: 3\ndata: 4\ndata: \n\n")
    }

    @Test func heartbeatIsAComment() {
        #expect(String(buffer: SSEWireFormat.heartbeat) == ":heartbeat\n\n")
        var parser = SSEEventParser()
        #expect(parser.feed(SSEWireFormat.heartbeat.readableBytesView).isEmpty)
        #expect(parser.comments == ["heartbeat"])
    }

    @Test func theParserHandlesSplitInputAndAllLineEndings() {
        let text = "id: 1\r\nevent: a\r\ndata: x\r\n\r\nevent: b\rdata: y\r\rdata: z\n\n"
        var parser = SSEEventParser()
        var events: [SSEEvent] = []
        for byte in text.utf8 { events += parser.feed([byte]) }
        #expect(events == [
            SSEEvent(event: "a", data: "x", id: "1"), SSEEvent(event: "b", data: "y", id: "1"),
            SSEEvent(event: "message", data: "z", id: "1"),
        ])
    }

    @Test(arguments: [
        ("a", true), ("newEvent", true), ("scores:live_2.v-1", true), (String(repeating: "e", count: 64), true),
        ("", false), (String(repeating: "e", count: 65), false), ("with space", false), ("new\nline", false),
        ("émoji", false), ("a/b", false),
    ])
    func eventNames(name: String, valid: Bool) {
        #expect(HubName.isValidEvent(name) == valid)
    }

    @Test func topicNamesAllowUpTo128() {
        #expect(HubName.isValidTopic(String(repeating: "t", count: 128)))
        #expect(!HubName.isValidTopic(String(repeating: "t", count: 129)))
        #expect(!HubName.isValidTopic(""))
    }
}

@Suite struct HubJSONTests {
    @Test(arguments: [
        "42", "user \"quoted\" \\ back/slash", "line\nbreak\r\ttab\u{08}\u{0C}", "\u{00}\u{01}\u{1F}\u{7F}", "ü 日本 😀",
        "\u{2028}\u{2029}", "",
    ])
    func quotedMatchesTheEncoder(_ text: String) throws {
        #expect(HubJSON.quoted(text) == HubJSON.encode([text]).dropFirst().dropLast())
        #expect(ConnectedEventData(userId: text).json == HubJSON.encode(ConnectedEventData(userId: text)))
        let decoded = try JSONDecoder().decode(String.self, from: Data(HubJSON.quoted(text).utf8))
        #expect(decoded == text)
    }
}
