import NIOCore
import Shared
import Testing
@testable import WorkerCore

@Suite struct StreamPreambleTests {
    static let head =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: keep-alive\r\n"
        + "X-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\n"

    /// Today's bytes of a stream's head, pinned.
    @Test func aStreamsHeadWithAndWithoutCORS() {
        let none = StreamPreamble.responseHead(cors: CORSPolicy(allowedOrigins: []), origin: "https://app.example")
        #expect(String(buffer: none) == Self.head + "\r\n")
        let allowed = StreamPreamble.responseHead(cors: CORSPolicy(allowedOrigins: ["https://app.example"]), origin: "https://app.example")
        #expect(String(buffer: allowed) == Self.head + "Access-Control-Allow-Origin: https://app.example\r\nVary: Origin\r\n\r\n")
        let any = StreamPreamble.responseHead(cors: CORSPolicy(allowedOrigins: ["*"]), origin: nil)
        #expect(String(buffer: any) == Self.head + "Access-Control-Allow-Origin: *\r\n\r\n")
    }

    static let preamble = StreamPreamble(frames: EventFrames(epoch: 7), retryMilliseconds: 2500)

    static func history(_ targets: [PublishTarget], capacity: Int = 10) -> EventHistory {
        var history = EventHistory(capacity: capacity, maximumAge: .max)
        for (index, target) in targets.enumerated() {
            history.append(PublishCommand(target: target, event: "e", data: "\(index + 1)", sequence: UInt64(index + 1)))
        }
        return history
    }

    @Test func aNewStreamsOpeningIsItsHeadThenOneChunkOfRetryAndConnected() {
        let opening = Self.preamble.opening(
            head: ByteBuffer(string: "HEAD\r\n\r\n"), userID: "alice", lastEventID: nil, history: Self.history([.everyone]),
            isRecipient: { _ in true })
        let greeting = "retry: 2500\nevent: connected\n" + #"data: {"message":"Connected to SSE stream","userId":"alice"}"# + "\n\n"
        #expect(String(buffer: opening.bytes) == "HEAD\r\n\r\n" + String(greeting.utf8.count, radix: 16) + "\r\n" + greeting + "\r\n")
        #expect(!opening.isReset)
    }

    @Test func aResumingStreamsGreetingCarriesWhatItsUserMissed() {
        let opening = Self.preamble.opening(
            head: ByteBuffer(), userID: "alice", lastEventID: "7-1", history: Self.history([.everyone, .user("bob"), .user("alice")]),
            isRecipient: { $0 != .user("bob") })
        let body = String(buffer: opening.bytes)
        #expect(body.hasSuffix("event: connected\n" + #"data: {"message":"Connected to SSE stream","userId":"alice"}"# + "\n\nid: 7-3\nevent: e\ndata: 3\n\n\r\n"))
        #expect(!opening.isReset)
    }

    @Test func anUnknowableIdIsAReset() {
        let opening = Self.preamble.opening(
            head: ByteBuffer(), userID: "alice", lastEventID: "6-1", history: Self.history([.everyone]), isRecipient: { _ in true })
        #expect(opening.isReset)
        #expect(String(buffer: opening.bytes).contains("event: reset\n" + #"data: {"lastEventId":"6-1","reason":"history-gap"}"# + "\n\n"))
    }

    @Test func aContinuationIsTheMissedEventsInOneChunkOrNothing() throws {
        let history = Self.history([.everyone, .topic("news"), .topic("sport")])
        let continuation = try #require(Self.preamble.continuation(after: 1, history: history, isRecipient: { $0 != .topic("sport") }))
        let frames = "id: 7-2\nevent: e\ndata: 2\n\n"
        #expect(String(buffer: continuation) == String(frames.utf8.count, radix: 16) + "\r\n" + frames + "\r\n")
        #expect(Self.preamble.continuation(after: 3, history: history, isRecipient: { _ in true }) == nil)
    }
}
