import NIOCore
import Shared
import SupervisorCore
import Testing

@Suite("A publish body is validated in a fixed order, each refusal saying what was wrong")
struct PublishRequestTests {
    static func parse(_ json: String) -> Result<PublishRequest, APIError> {
        PublishRequest.parse(ByteBuffer(string: json))
    }

    static let notAnObject = APIError(status: 400, "body must be a JSON object")
    static let badEvent = APIError(status: 400, "event must be 1-64 characters [A-Za-z0-9_.:-]")
    static let combined = APIError(status: 400, "topic and userId cannot be combined")
    static let badTopic = APIError(status: 400, "topic must be 1-128 characters [A-Za-z0-9_.:-]")
    static let badUserID = APIError(status: 400, "userId must be a non-empty string (at most 1024 bytes) or an integer")

    @Test(arguments: [
        // Everyone, a topic, a user (a string, or an integer written as a string); data re-encoded compactly with
        // sorted keys and `/` unescaped, `null` when absent.
        (#"{"event":"news","data":{"b":"/x","a":[1,2.5,true,null]}}"#, PublishRequest(target: .everyone, event: "news", data: #"{"a":[1,2.5,true,null],"b":"/x"}"#)),
        (#"{"event":"a.b:c_d-e","topic":"t.1:x_y-Z","data":"hi"}"#, PublishRequest(target: .topic("t.1:x_y-Z"), event: "a.b:c_d-e", data: #""hi""#)),
        (#"{"event":"e","userId":"user-1","data":7}"#, PublishRequest(target: .user("user-1"), event: "e", data: "7")),
        (#"{"event":"e","userId":42}"#, PublishRequest(target: .user("42"), event: "e", data: "null")),
        (#"{"event":"e","userId":-9007199254740993}"#, PublishRequest(target: .user("-9007199254740993"), event: "e", data: "null")),
        (#"{"event":"e","data":null}"#, PublishRequest(target: .everyone, event: "e", data: "null")),
        (#" {"data":{},"extra":1,"event":"e"} "#, PublishRequest(target: .everyone, event: "e", data: "{}")),
        // The bounds themselves: a 64-character event, a 128-character topic, a user id of 1024 bytes.
        (#"{"event":"\#(String(repeating: "e", count: 64))","topic":"\#(String(repeating: "t", count: 128))"}"#,
         PublishRequest(target: .topic(String(repeating: "t", count: 128)), event: String(repeating: "e", count: 64), data: "null")),
        (#"{"event":"e","userId":"\#(String(repeating: "u", count: 1024))"}"#,
         PublishRequest(target: .user(String(repeating: "u", count: 1024)), event: "e", data: "null")),
    ])
    func accepts(_ json: String, _ expected: PublishRequest) {
        #expect(Self.parse(json) == .success(expected), "\(json)")
    }

    @Test(arguments: [
        // Not JSON at all.
        ("", APIError.malformedJSON),
        ("{", .malformedJSON),
        (#"{"event":"e""#, .malformedJSON),
        ("{'event':'e'}", .malformedJSON),
        ("event=e", .malformedJSON),
        // JSON, but not an object.
        ("[]", notAnObject),
        (#"[{"event":"e"}]"#, notAnObject),
        (#""e""#, notAnObject),
        ("null", notAnObject),
        ("42", notAnObject),
        // event: missing, not a string, empty, too long, a character outside the set.
        (#"{"data":1}"#, badEvent),
        (#"{"event":null}"#, badEvent),
        (#"{"event":7}"#, badEvent),
        (#"{"event":""}"#, badEvent),
        (#"{"event":"\#(String(repeating: "e", count: 65))"}"#, badEvent),
        (#"{"event":"a b"}"#, badEvent),
        (#"{"event":"caf\u00e9"}"#, badEvent),
        // event is checked before the target: a bad event with a bad topic is a bad event.
        (#"{"event":"","topic":""}"#, badEvent),
        // topic and userId together, whatever their values (even null, which is present).
        (#"{"event":"e","topic":"t","userId":"u"}"#, combined),
        (#"{"event":"e","topic":"","userId":1.5}"#, combined),
        (#"{"event":"e","topic":null,"userId":"u"}"#, combined),
        // topic: empty, too long, not a string, null, a character outside the set.
        (#"{"event":"e","topic":""}"#, badTopic),
        (#"{"event":"e","topic":"\#(String(repeating: "t", count: 129))"}"#, badTopic),
        (#"{"event":"e","topic":1}"#, badTopic),
        (#"{"event":"e","topic":null}"#, badTopic),
        (#"{"event":"e","topic":"a/b"}"#, badTopic),
        // userId: empty, not an integer (1.5), another kind, null, over 1024 bytes (counted in UTF-8, not characters).
        (#"{"event":"e","userId":""}"#, badUserID),
        (#"{"event":"e","userId":1.5}"#, badUserID),
        (#"{"event":"e","userId":true}"#, badUserID),
        (#"{"event":"e","userId":["u"]}"#, badUserID),
        (#"{"event":"e","userId":{}}"#, badUserID),
        (#"{"event":"e","userId":null}"#, badUserID),
        (#"{"event":"e","userId":"\#(String(repeating: "u", count: 1025))"}"#, badUserID),
        (#"{"event":"e","userId":"\#(String(repeating: "\u{E9}", count: 513))"}"#, badUserID),
    ])
    func refuses(_ json: String, _ error: APIError) {
        #expect(Self.parse(json) == .failure(error), "\(json.prefix(80))")
    }

    @Test func readsOnlyTheReadableBytes() {
        var buffer = ByteBuffer(string: #"xx{"event":"e","topic":"t"}"#)
        buffer.moveReaderIndex(forwardBy: 2)
        #expect(PublishRequest.parse(buffer) == .success(PublishRequest(target: .topic("t"), event: "e", data: "null")))
    }
}
