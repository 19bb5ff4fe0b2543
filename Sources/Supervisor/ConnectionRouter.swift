import Logging
import NIOCore
import Shared
import SupervisorCore

/// Decides, for each connection whose head has arrived, who serves it: the worker of the user its token
/// names (the descriptor is passed and closed here), or the supervisor itself (health, the publishers'
/// API, and every error).
struct ConnectionRouter: Sendable {
    let verifier: TokenVerifier
    let pool: WorkerPool
    let localServer: LocalHTTPServer
    let logger: Logger
    /// How long a connection waits for its worker to come back (restart) or catch up, before it is turned away.
    var workerWait: Duration = .seconds(5)
    /// The `retry:` a stream turned away is given (`--retry-ms`).
    var retryMilliseconds = 3000

    func headArrived(fd: CInt, head: [UInt8]) {
        switch RoutingDecision(head: head) {
        case .refuse(let error, let origin):
            localServer.reject(fd, error, origin: origin)
        case .serveLocally:
            localServer.serve(fd, disposition: .normal)
        case .handOff(let request):
            handOff(fd, request, headLength: head.count)
        }
    }

    private func handOff(_ fd: CInt, _ request: RoutingDecision.HandoffRequest, headLength: Int) {
        // All on the accept thread, without a hop: verify, pick the shard, pass the descriptor.
        let identity: Identity
        switch verifier.verifyUser(request.token) {
        case .failure(let failure):
            localServer.serve(fd, disposition: .reject(APIError(failure)))
            return
        case .success(let verified):
            identity = verified
        }
        let userID = identity.userID ?? ""
        let shard = ShardFunction.shard(for: userID, shardCount: pool.shardCount)
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
            localServer.reject(fd, APIError(status: 431, message), origin: nil)
            return
        }
        if request.route == .stream {
            guard consume(headLength, from: fd) else { return }
        }
        if pool.handOff(fd, payload, shard: shard) == .sent {
            Syscall.close(fd)
            return
        }
        // The worker is restarting or behind: wait for it off the accept thread.
        Task { await retryHandOff(fd: fd, handoff: handoff, payload: payload, shard: shard) }
    }

    /// Reads the `count` bytes of the request head (peeked before, so they are there) off the socket.
    private func consume(_ count: Int, from fd: CInt) -> Bool {
        let read = withUnsafeTemporaryAllocation(byteCount: count, alignment: 1) { buffer in
            try? Syscall.receive(fd, into: buffer)
        }
        guard read == count else {
            logger.warning("a request head could not be read after it was peeked; connection closed")
            Syscall.close(fd)
            return false
        }
        return true
    }

    private func retryHandOff(fd: CInt, handoff: Handoff, payload: [UInt8], shard: Int) async {
        var retry = WorkerPool.HandoffRetry(for: workerWait)
        while pool.handOff(fd, payload, shard: shard) != .sent {
            guard let pause = retry.nextPause() else {
                logger.warning("no worker took the connection in time", metadata: ["worker": "\(shard)", "user": "\(handoff.userID)"])
                let message = "The worker for this user is unavailable; retry shortly"
                if handoff.route == .stream {
                    // Its request is read; a 503 would make a browser's EventSource give up for good.
                    localServer.streamUnavailable(fd, message: message, retryMilliseconds: retryMilliseconds, origin: handoff.origin)
                } else {
                    localServer.serve(fd, disposition: .reject(APIError(status: 503, message)))
                }
                return
            }
            try? await Task.sleep(for: pause)
        }
        Syscall.close(fd)
    }

    func headRejected(fd: CInt, reason: AcceptReactor.Rejection) {
        switch reason {
        case .headTooLarge:
            localServer.reject(fd, APIError(status: 431, "Request head too large"), origin: nil)
        case .headTimeout:
            localServer.reject(fd, APIError(status: 408, "Request head not received in time"), origin: nil)
        case .clientLimited(let refusal):
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
