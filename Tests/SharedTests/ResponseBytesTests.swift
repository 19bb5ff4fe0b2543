import NIOCore
import NIOEmbedded
import NIOHTTP1
import Shared
import Testing

/// The exact bytes of the answers every path writes, pinned: a change of one header's order or casing is a change
/// of the HTTP contract, whichever writer produced it.
@Suite struct ResponseBytesTests {
    static let cors = CORSPolicy(allowedOrigins: ["https://app.example"])

    /// Stands where an API handler stands, so `HTTPResponses` writes through the encoder ahead of it.
    final class Probe: ChannelInboundHandler {
        typealias InboundIn = Never
    }

    /// What `answer` writes through a server pipeline's response encoder, as one string.
    static func written(through encoder: some ChannelHandler, _ answer: (ChannelHandlerContext) -> Void) throws -> String {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers([encoder, Probe()])
        answer(try channel.pipeline.syncOperations.context(handlerType: Probe.self))
        var bytes = ByteBuffer()
        while var part = try channel.readOutbound(as: ByteBuffer.self) { bytes.writeBuffer(&part) }
        return String(buffer: bytes)
    }

    static let jsonError =
        "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: 55\r\n"
        + "Connection: close\r\nAccess-Control-Allow-Origin: https://app.example\r\nVary: Origin\r\nAllow: POST\r\n\r\n"
        + #"{"msg":"Method not allowed (use POST)","success":false}"#

    static let jsonAnswer =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: 16\r\nConnection: close\r\n"
        + "Vary: Origin\r\n\r\n" + #"{"success":true}"#

    /// NIO's encoder drops `Content-Length` from a 204: the preflight never carried it on the wire.
    static let preflight =
        "HTTP/1.1 204 No Content\r\nConnection: close\r\nAccess-Control-Allow-Origin: https://app.example\r\nVary: Origin\r\n"
        + "Access-Control-Allow-Methods: POST, OPTIONS\r\n"
        + "Access-Control-Allow-Headers: Authorization, x-auth-token, Content-Type, Last-Event-ID\r\nAccess-Control-Max-Age: 600\r\n\r\n"

    /// NIO's encoder (the supervisor's pipelines) and the hub's own (the worker's) must write the same bytes.
    static var encoders: [@Sendable () -> any ChannelHandler] { [{ HTTPResponseEncoder() }, { HTTPResponsePartEncoder() }] }

    @Test(arguments: 0..<encoders.count) func httpResponsesWritesTodaysBytes(encoder: Int) throws {
        let responses = HTTPResponses(cors: Self.cors)
        let route = try #require(APIRoute.allCases.first { $0.method == .POST })
        let error = try Self.written(through: Self.encoders[encoder]()) { context in
            responses.error(.methodNotAllowed(route), origin: "https://app.example", context: context)
        }
        #expect(error == Self.jsonError)
        let json = try Self.written(through: Self.encoders[encoder]()) { context in
            responses.json(SuccessBody(), origin: "https://elsewhere.example", context: context)
        }
        #expect(json == Self.jsonAnswer)
        let preflight = try Self.written(through: Self.encoders[encoder]()) { context in
            responses.preflight(route: route, origin: "https://app.example", context: context)
        }
        #expect(preflight == Self.preflight)
    }

    /// `100 Continue` is a status line alone, whichever encoder writes it; an expectation other than 100-continue
    /// is refused (417), and HTTP/1.0's are ignored (RFC 9110 §10.1.1).
    @Test(arguments: 0..<encoders.count) func anExpectedContinueIsAStatusLineAlone(encoder: Int) throws {
        let responses = HTTPResponses(cors: Self.cors)
        func head(_ expect: [String], version: HTTPVersion = .http1_1) -> HTTPRequestHead {
            HTTPRequestHead(version: version, method: .POST, uri: "/", headers: HTTPHeaders(expect.map { ("Expect", $0) }))
        }
        var refusals: [APIError?] = []
        let written = try Self.written(through: Self.encoders[encoder]()) { context in
            for expect in [["100-continue"], ["100-CONTINUE"], [], ["100-continue", "100-continue"], ["100-continue, x"], ["x"]] {
                refusals.append(responses.meetExpectation(of: head(expect), context: context))
            }
            refusals.append(responses.meetExpectation(of: head(["100-continue"], version: .http1_0), context: context))
            refusals.append(responses.meetExpectation(of: head(["x"], version: .http1_0), context: context))
        }
        #expect(written == String(repeating: "HTTP/1.1 100 Continue\r\n\r\n", count: 3))
        #expect(refusals == [nil, nil, nil, nil, .expectationFailed, .expectationFailed, nil, nil])
    }

    @Test func rawAnswersAreTodaysBytes() {
        let refused = RawAnswerHandler.error(
            status: 429, message: "Too many", extraHeaders: [("Retry-After", "1")] + Self.cors.responseHeaders(origin: nil))
        #expect(
            refused
                == "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: 34\r\n"
                + "Retry-After: 1\r\nVary: Origin\r\nConnection: close\r\n\r\n" + #"{"msg":"Too many","success":false}"#)
        let unavailable = RawAnswerHandler.streamUnavailable(
            message: "down", retryMilliseconds: 2500, extraHeaders: Self.cors.responseHeaders(origin: "https://app.example"))
        let frames = "retry: 2500\nevent: unavailable\n"
            + #"data: {"msg":"down","reason":"worker-unavailable","retryMs":2500}"# + "\n\n"
        #expect(
            unavailable
                == "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n"
                + "Access-Control-Allow-Origin: https://app.example\r\nVary: Origin\r\nConnection: close\r\n\r\n"
                + String(frames.utf8.count, radix: 16) + "\r\n" + frames + "\r\n0\r\n\r\n")
    }

    @Test func theRetryLineIsOneField() {
        var buffer = ByteBuffer()
        SSEWireFormat.retry(3000, into: &buffer)
        #expect(String(buffer: buffer) == "retry: 3000\n")
    }
}
