import Logging
import NIOCore
import NIOPosix
import Shared

/// Takes connections off the hand-off socket (`SCM_RIGHTS`): a stream becomes a `StreamSocket`, a topic request a
/// SwiftNIO channel (it has a request to read and answer).
///
/// SwiftNIO can neither receive descriptors nor watch a socket it does not read, so the supervisor rings a
/// doorbell (a pipe, which a `PipeChannel` reads) once per turn of its accept loop that sent connections here: the
/// event loop wakes, drains the socket with non-blocking `recvmsg`, and adopts each connection in the same turn, with
/// no thread between.
/// The doorbell's end (the supervisor closed it, or died) ends the worker.
struct HandoffReceiver: Sendable {
    let socket: CInt
    let doorbell: CInt
    let eventLoop: any EventLoop
    let hub: NIOLoopBound<StreamHub>
    let sockets: NIOLoopBound<StreamSockets>
    let responses: HTTPResponses
    let logger: Logger
    /// How long a subscribe or unsubscribe request has to arrive whole (`--request-timeout`).
    let requestTimeout: TimeAmount
    /// Connections held per client address, when `--max-worker-conns-per-ip` bounds them (`maximumHeld`):
    /// the supervisor's own limits see a connection only until it hands it over, so without this one address
    /// holding many users' tokens could fill this worker's descriptors.
    let addressLimiter: NIOLoopBoundBox<ClientAddressLimiter>?

    /// Starts listening for the doorbell; `finished` is called once it has ended.
    func start(finished: @escaping @Sendable () -> Void) -> EventLoopFuture<Void> {
        NIOPipeBootstrap(group: eventLoop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(DoorbellHandler(receiver: self, finished: finished))
                }
            }
            .takingOwnershipOfDescriptor(input: doorbell)
            .map { _ in }
    }

    /// Adopts every connection waiting on the socket. On the event loop.
    fileprivate func adoptWaiting(
        using buffers: DescriptorPassing.ReceiveBuffers, outOfDescriptors: DroppedConnections, overAddressLimit: DroppedConnections
    ) {
        while true {
            let received: DescriptorPassing.Received?
            do {
                received = try DescriptorPassing.receive(
                    from: socket, waiting: false, using: buffers, maximumDescriptors: HandoffBatch.maximumCount)
            } catch .wouldBlock {
                return
            } catch {
                logger.error("bad hand-off message; dropped", metadata: ["error": "\(error)"])
                continue
            }
            guard let received else { return }  // the supervisor's end is closed; the doorbell's end follows
            let payloads: [ArraySlice<UInt8>]
            do {
                payloads = try HandoffBatch.handoffs(in: received.payload)
            } catch {
                logger.error("unreadable hand-off batch; its connections closed", metadata: ["error": "\(error)"])
                received.descriptors.forEach(Syscall.close)
                continue
            }
            // The kernel installs descriptors in the order sent and stops at this process's open-files limit, so those
            // that arrived belong to the first hand-offs; the rest of the connections are gone.
            for (fd, payload) in zip(received.descriptors, payloads) { take(fd, payload, overAddressLimit: overAddressLimit) }
            let missing = payloads.count - received.descriptors.count
            if missing > 0, received.descriptorsCutShort {
                for _ in 0..<missing { outOfDescriptors.record() }
            } else if missing != 0 {
                logger.error(
                    "hand-off message with \(received.descriptors.count) descriptors for \(payloads.count) connections; the extra dropped")
                received.descriptors.dropFirst(payloads.count).forEach(Syscall.close)
            }
        }
    }

    /// Adopts one handed-over connection, or refuses it (429) when its address is over the limit.
    private func take(_ fd: CInt, _ payload: ArraySlice<UInt8>, overAddressLimit: DroppedConnections) {
        do {
            let handoff = try Handoff(decoding: payload)
            switch admit(fd, handoff) {
            case .uncounted: adopt(fd, handoff: handoff, address: nil)
            case .counted(let address): adopt(fd, handoff: handoff, address: address)
            case .refused:
                overAddressLimit.record()
                refuse(fd, handoff)
            }
        } catch {
            logger.error("unreadable hand-off; connection closed", metadata: ["error": "\(error)"])
            Syscall.close(fd)
        }
    }

    private enum Admission {
        /// No limit applies: none is set, the peer has no address to count by, or the table is full.
        case uncounted
        /// Counted against this address until the connection closes.
        case counted(ClientAddressKey)
        /// The address holds `--max-worker-conns-per-ip` connections here already.
        case refused
    }

    /// Counts the connection against its address's limit. A stream migrating in on reload is counted, never refused.
    private func admit(_ fd: CInt, _ handoff: Handoff) -> Admission {
        guard let limiter = addressLimiter else { return .uncounted }
        let peer: sockaddr_storage
        do {
            peer = try Syscall.peerAddress(fd)
        } catch {
            return .uncounted  // ENOTCONN: the client left; the adoption fails on its own
        }
        guard let key = ClientAddressKey(peer) else { return .uncounted }
        let now = ContinuousClock.now
        if handoff.route == .migrated { return limiter.value.holdRegardless(key, now: now) ? .counted(key) : .uncounted }
        switch limiter.value.admit(key, now: now) {
        case .admitted:
            limiter.value.hold(key)
            return .counted(key)
        case .admittedUntracked: return .uncounted
        case .refused: return .refused
        }
    }

    /// Answers 429 (the stream's request was read by the supervisor; a topic request's is drained unread).
    private func refuse(_ fd: CInt, _ handoff: Handoff) {
        let answer = RawAnswerHandler.error(
            status: 429, message: "Too many connections from this address; retry shortly",
            extraHeaders: [("Retry-After", "1")] + responses.cors.responseHeaders(origin: handoff.origin))
        let logger = self.logger
        ClientBootstrap(group: eventLoop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(RawAnswerHandler(response: answer)) }
            }
            .withConnectedSocket(fd)
            .whenFailure { error in logger.warning("cannot answer a refused connection", metadata: ["error": "\(error)"]) }
    }

    private func adopt(_ fd: CInt, handoff: Handoff, address: ClientAddressKey?) {
        switch handoff.route {
        case .stream, .migrated: adoptStream(fd, handoff: handoff, address: address)
        case .subscribe, .unsubscribe: adoptTopicRequest(fd, handoff: handoff, address: address)
        }
    }

    /// Starts a stream (its request was read by the supervisor) or continues one migrated from a retiring worker.
    private func adoptStream(_ fd: CInt, handoff: Handoff, address: ClientAddressKey?) {
        let socket: StreamSocket
        do {
            socket = try sockets.value.adopt(fd, userID: handoff.userID, address: address)
        } catch {
            if let address { addressLimiter?.value.release(address) }
            return logger.warning("cannot adopt a handed-over stream", metadata: ["error": "\(error)"])
        }
        if handoff.route == .migrated {
            hub.value.attachMigrated(socket: socket, handoff: handoff)
        } else {
            hub.value.attach(
                userID: handoff.userID, socket: socket, lastEventID: handoff.lastEventID, tokenExpiry: handoff.tokenExpiry,
                responseHead: StreamPreamble.responseHead(cors: responses.cors, origin: handoff.origin))
        }
    }

    private func adoptTopicRequest(_ fd: CInt, handoff: Handoff, address: ClientAddressKey?) {
        let hub = self.hub
        let addressLimiter = self.addressLimiter
        let responses = self.responses
        let logger = self.logger
        let requestTimeout = self.requestTimeout
        ClientBootstrap(group: eventLoop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(
                        TopicRequestHandler.handlers(handoff: handoff, hub: hub, responses: responses, requestTimeout: requestTimeout))
                }
            }
            .withConnectedSocket(fd)
            .whenComplete { result in
                if let address, let addressLimiter {
                    switch result {
                    case .success(let channel): channel.closeFuture.whenComplete { _ in addressLimiter.value.release(address) }
                    case .failure: addressLimiter.value.release(address)
                    }
                }
                if case .failure(let error) = result {
                    logger.warning("cannot adopt a handed-over connection", metadata: ["error": "\(error)"])
                }
            }
    }
}

/// Reads the doorbell: each read (of however many rings) drains the hand-off socket.
private final class DoorbellHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let receiver: HandoffReceiver
    private let finished: @Sendable () -> Void
    private let buffers = DescriptorPassing.ReceiveBuffers()
    private let outOfDescriptors: DroppedConnections
    private let overAddressLimit: DroppedConnections

    init(receiver: HandoffReceiver, finished: @escaping @Sendable () -> Void) {
        self.receiver = receiver
        self.finished = finished
        outOfDescriptors = DroppedConnections(
            eventLoop: receiver.eventLoop, logger: receiver.logger,
            message: "connections lost: this worker has reached its open-files limit (RLIMIT_NOFILE); run more workers (--workers) or raise the limit (LimitNOFILE=)",
            event: "worker-out-of-descriptors", countKey: "lost", details: ["limit": "RLIMIT_NOFILE"])
        overAddressLimit = DroppedConnections(
            eventLoop: receiver.eventLoop, logger: receiver.logger,
            message: "connections refused (429): their address holds --max-worker-conns-per-ip connections on this worker",
            event: "client-limited", countKey: "refused")
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        receiver.adoptWaiting(using: buffers, outOfDescriptors: outOfDescriptors, overAddressLimit: overAddressLimit)
    }

    func channelInactive(context: ChannelHandlerContext) {
        receiver.adoptWaiting(using: buffers, outOfDescriptors: outOfDescriptors, overAddressLimit: overAddressLimit)
        finished()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        receiver.logger.error("the hand-off doorbell failed", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }
}
