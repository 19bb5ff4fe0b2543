import NIOCore
import NIOEmbedded
import Shared
import Testing
@testable import WorkerCore

/// A handed-over subscribe, through the worker's real pipeline (NIO's parser, the hub's response encoder).
@Suite struct TopicRequestHandlerTests {
    static func answer(_ fixture: HubFixture, route: HandoffRoute, path: String, body: String) throws -> String {
        let channel = EmbeddedChannel(loop: fixture.loop)
        try channel.pipeline.syncOperations.addHandlers(
            TopicRequestHandler.handlers(
                handoff: Handoff(route: route, userID: "alice", tokenExpiry: nil), hub: NIOLoopBound(fixture.hub, eventLoop: fixture.loop),
                responses: HTTPResponses(cors: CORSPolicy(allowedOrigins: [])), requestTimeout: .seconds(30)))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9)).wait()
        try channel.writeInbound(
            ByteBuffer(string: "POST \(path) HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"))
        var bytes = ByteBuffer()
        while var part = try channel.readOutbound(as: ByteBuffer.self) { bytes.writeBuffer(&part) }
        return String(buffer: bytes)
    }

    @Test func aSubscribeIsAnsweredAndReachesTheHub() throws {
        let fixture = HubFixture()
        fixture.historyArrived()
        let body = #"{"msg":"Subscribed to topics","success":true,"topics":["news"]}"#
        #expect(
            try Self.answer(fixture, route: .subscribe, path: "/api/sse/subscribe", body: #"{"topics":["news"]}"#)
                == "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: \(body.utf8.count)\r\n"
                + "Connection: close\r\n\r\n" + body)
        let stream = try fixture.openStream("alice")
        fixture.publish(.topic("news"), .topic("sport"))
        #expect(try Received(stream).ids == [HubFixture.id(1)])
    }

    @Test func anInvalidBodyIsA400() throws {
        let fixture = HubFixture()
        let answer = try Self.answer(fixture, route: .unsubscribe, path: "/api/sse/unsubscribe", body: #"{"topics":"news"}"#)
        #expect(answer.hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
        #expect(answer.hasSuffix(HubJSON.encode(FailureBody(msg: APIError.invalidTopics.message))))
    }
}
