import Logging
import NIOCore
import Shared
import SystemPackage

/// Decides, for each connection whose head has arrived, who serves it: the worker of the user its token
/// names (a `HandoffDispatcher.Job` for the accept thread to pass on), or the supervisor itself (health, the
/// publishers' API, and every error).
struct ConnectionRouter: Sendable {
    let verifier: TokenVerifier
    let shardCount: Int
    let localServer: LocalHTTPServer
    let metrics: HostMetrics
    let logger: Logger
    /// How long a connection waits for its worker to come back (restart) or catch up, before it is turned away.
    var workerWait: Duration = .seconds(5)
    /// The `retry:` a stream turned away is given (`--retry-ms`).
    var retryMilliseconds = 3000
    /// `--auth-cookie`: the cookie that may carry a token.
    var cookieAuth: CookieAuth?
    /// Serves the operator's connections (`ctl`); set once the control plane exists.
    var operatorConnections: OperatorConnections?

    /// A connection to the operator's socket.
    func operatorConnection(_ fd: CInt) {
        guard let operatorConnections else { return Syscall.close(fd) }
        operatorConnections.serve(fd)
    }

    /// The job that passes the connection to its worker, or nil when it was answered or refused here.
    /// `tokens` is the accept thread's: the same verifier, with the tokens it verified lately.
    func headArrived(fd: CInt, head: [UInt8], acceptedAt: ContinuousClock.Instant, tokens: CachingTokenVerifier) -> HandoffDispatcher.Job? {
        switch RoutingDecision(head: head, cookieAuth: cookieAuth) {
        case .refuse(let error, let origin):
            metrics.refused(.badRequest)
            localServer.reject(fd, error, origin: origin)
        case .serveLocally:
            localServer.serve(fd, disposition: .normal)
        case .handOff(let request):
            return handOff(fd, request, headLength: head.count, acceptedAt: acceptedAt, tokens: tokens)
        }
        return nil
    }

    private func handOff(
        _ fd: CInt, _ request: RoutingDecision.HandoffRequest, headLength: Int, acceptedAt: ContinuousClock.Instant,
        tokens: CachingTokenVerifier
    ) -> HandoffDispatcher.Job? {
        // All on the accept thread, without a hop: verify, pick the shard; the dispatcher passes the descriptor.
        let identity: Identity
        switch tokens.verifyUser(request.token) {
        case .failure(let failure):
            // Debug only: a flood of bad tokens must not flood the journal; an operator chasing a key rotation turns it on.
            logger.debug("token refused", metadata: AuthLog.metadata(failure))
            metrics.refused(.badToken)
            localServer.serve(fd, disposition: .reject(APIError(failure)))
            return nil
        case .success(let verified):
            identity = verified
        }
        let userID = identity.userID ?? ""
        let shard = ShardFunction.shard(for: userID, shardCount: shardCount)
        var handoff = Handoff(route: request.route, userID: userID, tokenExpiry: identity.expiresAt)
        if request.route == .stream {
            // The worker answers a stream from the hand-off alone, so the request leaves the socket here.
            handoff.lastEventID = request.lastEventID
            handoff.origin = request.origin
        }
        let payload: [UInt8]
        do {
            payload = try handoff.encoded()
        } catch {
            // Only a header a hand-off cannot carry gets here (a long Last-Event-ID or Origin): the request is
            // still unread, so the answer is a plain 431 like any other oversized head.
            let message = "Request header fields too large: \(error.field) is over \(Handoff.maximumHeaderValueBytes) bytes"
            metrics.refused(.headTooLarge)
            localServer.reject(fd, APIError(status: 431, message), origin: nil)
            return nil
        }
        if request.route == .stream {
            guard consume(headLength, from: fd) else { return nil }
        }
        return HandoffDispatcher.Job(fd: fd, payload: payload, shard: shard, handoff: handoff, acceptedAt: acceptedAt)
    }

    /// Reads the `count` bytes of the request head (peeked before, so they are there) off the socket.
    private func consume(_ count: Int, from fd: CInt) -> Bool {
        let read = withUnsafeTemporaryAllocation(byteCount: count, alignment: 1) { buffer in
            Result { () throws(Errno) in try Syscall.receive(fd, into: buffer) }
        }
        guard case .success(count?) = read else {
            // The client reset the connection in between (or the kernel lost the bytes): nothing to answer.
            logger.warning("a request head could not be read after it was peeked; connection closed", metadata: ["read": "\(read)"])
            Syscall.close(fd)
            return false
        }
        return true
    }

    /// No worker of the shard took the connection within `workerWait`: a 503, or for a stream (its request read
    /// already) the answer that makes an EventSource come back by itself.
    func workerUnavailable(fd: CInt, handoff: Handoff) {
        let message = "The worker for this user is unavailable; retry shortly"
        metrics.refused(.workerUnavailable)
        if handoff.route == .stream {
            // Its request is read; a 503 would make a browser's EventSource give up for good.
            localServer.streamUnavailable(fd, message: message, retryMilliseconds: retryMilliseconds, origin: handoff.origin)
        } else {
            localServer.serve(fd, disposition: .reject(APIError(status: 503, message)))
        }
    }

    func headRejected(fd: CInt, reason: AcceptReactor.Rejection) {
        switch reason {
        case .headTooLarge:
            metrics.refused(.headTooLarge)
            localServer.reject(fd, .headTooLarge, origin: nil)
        case .headTimeout:
            metrics.refused(.headTimeout)
            localServer.reject(fd, APIError(status: 408, "Request head not received in time"), origin: nil)
        case .clientLimited(let refusal):
            metrics.refused(.clientLimit)
            // A token refills within a second (rates are whole connections a second), and a held head resolves
            // within --head-timeout; a client that retries after a second finds room soon enough either way.
            let message =
                switch refusal {
                case .tooManyHeld: "Too many connections from this address"
                case .tooManyNew: "Too many new connections from this address"
                }
            localServer.reject(fd, APIError(status: 429, message + "; retry shortly"), origin: nil, headers: [("Retry-After", "1")])
        }
    }
}

/// A token refusal's log fields: its stable code, and for an invalid token why (never the token).
enum AuthLog {
    static func metadata(_ failure: AuthFailure) -> Logger.Metadata {
        var metadata: Logger.Metadata = ["event": "token-refused", "code": "\(failure.code.rawValue)"]
        if let reason = failure.reason { metadata["reason"] = "\(reason.rawValue)" }
        return metadata
    }
}
