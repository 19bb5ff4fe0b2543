import NIOCore
import Shared
import Testing
@testable import WorkerCore

@Suite struct TopicsRequestBodyTests {
    static func parse(_ text: String) -> Result<[String], APIError> { TopicsRequestBody.parse(ByteBuffer(string: text)) }

    @Test func topicsComeInTheOrderGiven() {
        #expect(Self.parse(#"{"topics":["news","a.b:c-d_9"]}"#) == .success(["news", "a.b:c-d_9"]))
        #expect(Self.parse(#"{"topics":[],"other":1}"#) == .success([]))
        let hundred = (0..<100).map { "t\($0)" }
        #expect(Self.parse(HubJSON.encode(["topics": hundred])) == .success(hundred))
    }

    @Test(arguments: ["", "{", "topics", #"{"topics":["a"]"#, "{\"topics\":[\"a\"]}x"])
    func notJSONIsMalformed(body: String) {
        #expect(Self.parse(body) == .failure(.malformedJSON))
    }

    @Test func nonUTF8IsMalformed() {
        var bytes = ByteBuffer(string: #"{"topics":[""#)
        bytes.writeBytes([0xFF, 0xFE])
        bytes.writeString(#""]}"#)
        #expect(TopicsRequestBody.parse(bytes) == .failure(.malformedJSON))
    }

    @Test(arguments: [
        #"[]"#, #""topics""#, #"{}"#, #"{"topics":"news"}"#, #"{"topics":null}"#, #"{"topics":[1]}"#,
        #"{"topics":[["news"]]}"#, #"{"topics":["news",null]}"#,
    ])
    func wrongShapesAreInvalidTopics(body: String) {
        #expect(Self.parse(body) == .failure(.invalidTopics))
    }

    @Test func moreThanAHundredIsInvalid() {
        #expect(Self.parse(HubJSON.encode(["topics": (0..<101).map { "t\($0)" }])) == .failure(.invalidTopics))
    }

    @Test(arguments: ["", "has space", "ü", "a/b", String(repeating: "x", count: 129)])
    func invalidNamesAreRefusedWhole(name: String) {
        #expect(Self.parse(HubJSON.encode(["topics": ["good", name]])) == .failure(.invalidTopics))
    }
}
