import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Shared

/// Serves, with SwiftNIO, the connections the supervisor answers itself.
struct LocalHTTPServer: Sendable {
    enum Disposition: Sendable {
        /// Route the request normally.
        case normal
        /// Answer the request with this error whatever it asks for.
        case reject(APIError)
    }

    let group: any EventLoopGroup
    let api: SupervisorAPI
    let logger: Logger
    /// A request must arrive whole within this time (`--request-timeout`), or it is answered 408.
    var requestTimeout: TimeAmount = .seconds(30)
    /// How long a publisher's connection may idle between requests (`--keepalive-timeout`); nil: one request each.
    var keepAliveTimeout: TimeAmount? = .seconds(30)
    /// `--max-head-bytes`: the accept thread holds a first request's head to it; SwiftNIO holds a kept connection's
    /// later ones (their header fields), which no other reader sees.
    var maximumHeadBytes = 8192
    /// Every connection served here, while it is open.
    var open = OpenConnections()

    /// Adopts `fd` (its unread request still in the socket) into an HTTP/1 pipeline.
    func serve(_ fd: CInt, disposition: LocalHTTPServer.Disposition) {
        let (timeout, keepAlive, open, maximumHeadBytes) = (requestTimeout, keepAliveTimeout, open, maximumHeadBytes)
        ClientBootstrap(group: group)
            .channelInitializer { channel in
                open.track(channel)
                return channel.eventLoop.makeCompletedFuture {
                    // Without NIO's error handler, whose 400 is plain text: SupervisorHTTPHandler answers in JSON.
                    let handler = SupervisorHTTPHandler(api: api, disposition: disposition, requestTimeout: timeout, keepAliveTimeout: keepAlive)
                    let codec = HTTPResponses.oneRequestCodec(maximumHeadBytes: maximumHeadBytes)
                    try channel.pipeline.syncOperations.addHandlers(codec + [HTTPServerPipelineHandler(), handler])
                }
            }
            .withConnectedSocket(fd)
            .whenFailure { error in
                logger.warning("cannot adopt a client connection", metadata: ["error": "\(error)"])
            }
    }

    /// Answers a connection whose head is refused (malformed, too large, too slow, or its address over a limit)
    /// without parsing it any further, reading and dropping what the client still sends, so the answer is not lost
    /// to a reset.
    func reject(_ fd: CInt, _ error: APIError, origin: String?, headers: [(String, String)] = []) {
        var headers = headers + api.responses.cors.responseHeaders(origin: origin)
        if let allow = error.allow { headers.append(("Allow", allow)) }
        answerRaw(fd, RawAnswerHandler.error(status: error.status, message: error.message, extraHeaders: headers))
    }

    /// Answers a stream request (already read) whose worker is unavailable the way EventSource understands: a
    /// short event stream, `retry:` then `event: unavailable`, then its end. A browser reconnects after `retry`
    /// milliseconds (with its Last-Event-ID) by itself; to a non-200 answer it would give up for good.
    func streamUnavailable(_ fd: CInt, message: String, retryMilliseconds: Int, origin: String?) {
        answerRaw(
            fd,
            RawAnswerHandler.streamUnavailable(
                message: message, retryMilliseconds: retryMilliseconds, extraHeaders: api.responses.cors.responseHeaders(origin: origin)))
    }

    private func answerRaw(_ fd: CInt, _ response: String) {
        let open = self.open
        ClientBootstrap(group: group)
            .channelInitializer { channel in
                open.track(channel)
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(RawAnswerHandler(response: response))
                }
            }
            .withConnectedSocket(fd)
            .whenFailure { error in
                logger.warning("cannot adopt a client connection", metadata: ["error": "\(error)"])
            }
    }
}
