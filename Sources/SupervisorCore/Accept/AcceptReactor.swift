import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import Shared
import SystemPackage

/// Accepts connections on every listener and watches each, without reading it, until its request head has
/// arrived whole: then `ConnectionRouter` decides who serves it, and a connection for a worker is passed on by
/// `HandoffDispatcher`, from the hand-off table the control plane publishes. The accept path never waits for the
/// control plane.
///
/// One thread and one `epoll` instance, edge-triggered on the clients (see `Epoll.Events.edgeTriggered`).
/// Heads that stay incomplete past `headTimeout`, or grow past `maximumHeadBytes`, go to the router's
/// `headRejected`, and so do connections over the limits per client address (`ClientAddressLimiter`), straight
/// after accept.
final class AcceptReactor: Service, Sendable {
    enum Rejection: Sendable {
        case headTooLarge, headTimeout
        case clientLimited(ClientAddressLimiter.Refusal)
    }

    struct Limits: Sendable {
        var headTimeout: Duration
        var maximumHeadBytes: Int
        var perClientAddress = ClientAddressLimiter.Policy()
        var tokenCacheSize = 0
        /// After a turn that accepted connections under a steady arrival, how long to let more gather before the
        /// next (`--accept-batch-us`); zero: never wait.
        var batchWindow = Duration.zero
    }

    private let listeners: [CInt]
    /// The operator's socket (`ctl`): accepted here too, and passed on at once to `router.operatorConnection`.
    private let operatorListener: CInt?
    private let limits: Limits
    private let router: ConnectionRouter
    private let tables: HandoffTablePublisher
    private let logger: Logger
    private let handOver: AcceptHandOver
    /// Connections a supervisor that upgraded in place held when it stopped: taken on at the start.
    private let carried: AcceptHandOver.Held
    private var wake: EventCounter { handOver.wake }

    init(
        listeners: [CInt], operatorListener: CInt?, limits: Limits, router: ConnectionRouter, tables: HandoffTablePublisher,
        handOver: AcceptHandOver, carried: AcceptHandOver.Held = AcceptHandOver.Held(), logger: Logger
    ) {
        self.listeners = listeners
        self.operatorListener = operatorListener
        self.limits = limits
        self.router = router
        self.tables = tables
        self.handOver = handOver
        self.carried = carried
        self.logger = logger
    }

    /// Routes a connection whose head arrived; true when it went to a worker's queue (not served or refused here).
    private func onHead(
        _ fd: CInt, _ head: [UInt8], acceptedAt: ContinuousClock.Instant, tokens: CachingTokenVerifier, dispatcher: HandoffDispatcher
    ) -> Bool {
        guard let job = router.headArrived(fd: fd, head: head, acceptedAt: acceptedAt, tokens: tokens) else { return false }
        dispatcher.dispatch(job)
        return true
    }

    private func onRejected(_ fd: CInt, _ reason: Rejection) {
        router.headRejected(fd: fd, reason: reason)
    }

    func run() async throws {
        let loop = try ReactorLoop(reactor: self)
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let thread = Thread {
                // Foundation's `Thread.name` does not reach the kernel here; operators see this name in `top -H`.
                Syscall.nameThisThread("sse-accept")
                do {
                    try loop.run()
                    continuation.resume()
                } catch {
                    continuation.resume(throwing: error)
                }
            }
            thread.start()
            Task {
                try? await gracefulShutdown()
                self.wake.signal()
            }
        }
    }

    /// The loop's state, touched only by the reactor thread.
    private final class ReactorLoop: @unchecked Sendable {
        // @unchecked: created before and then used only on the reactor thread; handed to it once, never shared.
        struct Pending {
            var fd: CInt
            var deadline: ContinuousClock.Instant
            /// The address it counts against, when the limits per client address track it.
            var client: ClientAddressKey?
        }

        private static let wakeToken: UInt64 = .max
        private static let tableToken: UInt64 = .max - 1
        private static let operatorToken: UInt64 = .max - 2
        private static let firstClientToken: UInt64 = 1 << 32

        let reactor: AcceptReactor
        let epoll: Epoll
        let dispatcher: HandoffDispatcher
        /// Verifies the users' tokens, remembering them for a reconnect storm.
        let tokens: CachingTokenVerifier
        var pending: [UInt64: Pending] = [:]
        /// Tokens in arrival order, which is deadline order: every connection gets the same timeout.
        var deadlines: [UInt64] = []
        var deadlinesHead = 0
        var nextToken = firstClientToken
        var peekBuffer: UnsafeMutableRawBufferPointer
        var listenersPausedUntil: ContinuousClock.Instant?
        /// Nil when no limit per client address is set: then accept asks for no address and looks nothing up.
        var clientLimiter: ClientAddressLimiter?
        var clientLimitLog: ClientLimitLog
        /// Whether this turn of the loop passed a connection to a worker (what the batch window gathers for).
        var handedOffThisTurn = false

        init(reactor: AcceptReactor) throws {
            self.reactor = reactor
            let policy = reactor.limits.perClientAddress
            clientLimiter = policy.isEnabled ? ClientAddressLimiter(policy: policy) : nil
            if policy.isEnabled {
                reactor.logger.info(
                    "limits per client address", metadata: [
                        "event": "client-limits",
                        "max-conns-per-ip": "\(policy.maximumHeld ?? 0)", "conn-rate-per-ip": "\(policy.newPerSecond ?? 0)",
                        "tracked-addresses-max": "\(policy.maximumAddresses)",
                    ])
            }
            clientLimitLog = ClientLimitLog(logger: reactor.logger)
            epoll = try Epoll()
            let router = reactor.router
            tokens = CachingTokenVerifier(verifier: router.verifier, capacity: reactor.limits.tokenCacheSize)
            dispatcher = HandoffDispatcher(
                epoll: epoll, tables: reactor.tables, connectionWait: router.workerWait, metrics: router.metrics, logger: reactor.logger,
                onUnavailable: { fd, handoff in router.workerUnavailable(fd: fd, handoff: handoff) })
            peekBuffer = .allocate(byteCount: reactor.limits.maximumHeadBytes + 1, alignment: 1)
            try epoll.add(reactor.wake.descriptor, events: .readable, token: Self.wakeToken)
            // The dispatcher took the current table when it was made; every later publish rings this counter.
            try epoll.add(reactor.tables.changed.descriptor, events: .readable, token: Self.tableToken)
            if let operatorListener = reactor.operatorListener {
                try epoll.add(operatorListener, events: .readable, token: Self.operatorToken)
            }
            try addListeners()
            takeOver(reactor.carried)
        }

        /// Watches the connections an upgraded supervisor held (their heads are peeked afresh, their deadlines start
        /// now), and queues those that were waiting for their worker.
        private func takeOver(_ held: AcceptHandOver.Held) {
            for fd in held.unrouted {
                let token = nextToken
                nextToken += 1
                do {
                    try epoll.add(fd, events: [.readable, .peerClosed, .edgeTriggered], token: token)
                } catch {
                    Syscall.close(fd)
                    continue
                }
                pending[token] = Pending(fd: fd, deadline: .now + reactor.limits.headTimeout, client: nil)
                deadlines.append(token)
            }
            for waiting in held.waiting {
                guard let handoff = try? Handoff(decoding: waiting.payload) else {
                    Syscall.close(waiting.fd)
                    continue
                }
                dispatcher.dispatch(.init(fd: waiting.fd, payload: waiting.payload, shard: waiting.shard, handoff: handoff, acceptedAt: .now))
            }
        }

        /// What this thread holds, for an in-place upgrade.
        private var held: AcceptHandOver.Held {
            AcceptHandOver.Held(unrouted: pending.values.map(\.fd), waiting: dispatcher.waitingJobs)
        }

        deinit { peekBuffer.deallocate() }

        func addListeners() throws(Errno) {
            for (index, listener) in reactor.listeners.enumerated() {
                try epoll.add(listener, events: .readable, token: UInt64(index))
            }
        }

        func run() throws {
            defer {
                for connection in pending.values { Syscall.close(connection.fd) }
                pending.removeAll()
                dispatcher.closeAll()
            }
            var turnEndedAt = ContinuousClock.now
            while true {
                let ready = try epoll.wait(timeoutMilliseconds: nextTimeout())
                let wokeAt = ContinuousClock.now
                for event in ready {
                    switch event.token {
                    case Self.wakeToken:
                        dispatcher.flush()  // a pause or a stop must leave nothing unsent or unannounced
                        if reactor.handOver.servePause(holding: { held }) { continue }
                        reactor.logger.debug("accept loop stopping")
                        return
                    case Self.operatorToken:
                        acceptOperatorConnections()
                    case Self.tableToken:
                        dispatcher.tableChanged()
                    case ..<UInt64(reactor.listeners.count):
                        acceptAll(on: reactor.listeners[Int(event.token)])
                    case ..<Self.firstClientToken:
                        _ = dispatcher.handle(token: event.token)
                    default:
                        peek(token: event.token, events: event.events)
                    }
                }
                let now = ContinuousClock.now
                expireDeadlines(now: now)
                dispatcher.expire(now: now)
                resumeListenersIfDue()
                clientLimitLog.flushIfDue()
                dispatcher.flush()
                if handedOffThisTurn { letConnectionsGather(waited: turnEndedAt.duration(to: wokeAt)) }
                handedOffThisTurn = false
                turnEndedAt = .now
            }
        }

        /// When connections for the workers arrive steadily (this turn passed some on, and its wait was shorter
        /// than the batch window), waits out the window before looking again, so that the next turn, and the worker
        /// its doorbell wakes, serve several connections at once: on a small VM a wake-up costs about what a
        /// connection's own work does. It adds at most the window to a connection's set-up; one that arrives after a
        /// quiet spell is served at once, and an idle hub never waits. Turns that only served the supervisor's own
        /// requests do not wait: a publisher that sends one publish after another, each on a new connection, would
        /// otherwise wait a window for every one (about 330 a second at most) and gain nothing from it.
        private func letConnectionsGather(waited: Duration) {
            let window = reactor.limits.batchWindow
            guard window > .zero, waited < window else { return }
            reactor.router.metrics.acceptBatchWaits.increment()
            Syscall.sleep(for: window)
        }

        private func nextTimeout() -> CInt {
            var wakeAt = listenersPausedUntil
            if let due = clientLimitLog.due { wakeAt = min(wakeAt ?? due, due) }
            if let due = dispatcher.nextDeadline { wakeAt = min(wakeAt ?? due, due) }
            if deadlinesHead < deadlines.count, let first = pending[deadlines[deadlinesHead]] {
                wakeAt = min(wakeAt ?? first.deadline, first.deadline)
            } else if deadlinesHead < deadlines.count {
                return 0  // a stale entry at the front: clear it straight away
            }
            return wakeAt?.pollTimeoutMilliseconds ?? -1
        }

        /// The operator's connections skip the heads and limits of clients: the socket's permissions decide who connects.
        private func acceptOperatorConnections() {
            guard let listener = reactor.operatorListener else { return }
            while true {
                do {
                    guard let fd = try Syscall.accept(listener) else { return }
                    reactor.router.operatorConnection(fd)
                } catch Errno.connectionAbort {
                    continue
                } catch {
                    reactor.logger.error("accept failed on the operator's socket", metadata: ["error": "\(error)"])
                    return
                }
            }
        }

        private func acceptAll(on listener: CInt) {
            var peer = sockaddr_storage()
            // Bounded, so a flood of connects cannot starve the heads already waiting.
            for _ in 0..<512 {
                let fd: CInt?
                do {
                    fd = try clientLimiter == nil ? Syscall.accept(listener) : Syscall.accept(listener, peer: &peer)
                } catch Errno.tooManyOpenFiles, Errno.tooManyOpenFilesInSystem, Errno.noMemory, Errno.noBufferSpace {
                    reactor.logger.error("accept paused for 100 ms: out of descriptors or memory", metadata: ["errno": "\(errno)"])
                    pauseListeners()
                    return
                } catch Errno.connectionAbort, Errno.protocolError {
                    continue
                } catch {
                    reactor.logger.error("accept failed", metadata: ["error": "\(error)"])
                    return
                }
                guard let fd else { return }
                reactor.router.metrics.connectionsAccepted.increment()
                var client: ClientAddressKey?
                if clientLimiter != nil {
                    guard case .admitted(let countedAs) = admit(fd, from: peer) else { continue }
                    client = countedAs
                }
                // Clients usually send their request right behind the handshake, so it is often there
                // already: taking it now spares two epoll_ctl calls and a wake-up per connection.
                if takeHeadIfComplete(fd) { continue }
                let token = nextToken
                nextToken += 1
                do {
                    try epoll.add(fd, events: [.readable, .peerClosed, .edgeTriggered], token: token)
                } catch {
                    reactor.logger.error("cannot watch an accepted connection", metadata: ["error": "\(error)"])
                    Syscall.close(fd)
                    continue
                }
                pending[token] = Pending(fd: fd, deadline: .now + reactor.limits.headTimeout, client: client)
                if let client { clientLimiter?.hold(client) }
                deadlines.append(token)
            }
        }

        enum Admission {
            /// Served; while the supervisor holds it, it counts against `countedAs` (nil: not tracked).
            case admitted(countedAs: ClientAddressKey?)
            /// Refused, and already given to `onRejected` (a 429).
            case refused
        }

        /// Applies the limits per client address to a connection just accepted from `peer`.
        private func admit(_ fd: CInt, from peer: sockaddr_storage) -> Admission {
            guard let key = ClientAddressKey(peer), clientLimiter != nil else { return .admitted(countedAs: nil) }
            let now = ContinuousClock.now
            switch clientLimiter!.admit(key, now: now) {
            case .admitted:
                return .admitted(countedAs: key)
            case .admittedUntracked:
                clientLimitLog.admittedUntracked(now: now)
                return .admitted(countedAs: nil)
            case .refused(let refusal):
                clientLimitLog.refused(refusal, from: key, now: now)
                reactor.onRejected(fd, .clientLimited(refusal))
                return .refused
            }
        }

        private func pauseListeners() {
            for listener in reactor.listeners { epoll.remove(listener) }
            listenersPausedUntil = .now + .milliseconds(100)
        }

        private func resumeListenersIfDue() {
            guard let until = listenersPausedUntil, until <= .now else { return }
            listenersPausedUntil = nil
            do {
                try addListeners()
            } catch {
                reactor.logger.critical("cannot watch the listening sockets again", metadata: ["error": "\(error)"])
            }
        }

        /// Peeks a just-accepted connection; if its whole head is there, hands it on and returns true.
        private func takeHeadIfComplete(_ fd: CInt) -> Bool {
            // Any failure (a reset, nothing there yet) is left to the watched path, which peeks again and handles it.
            guard let count = try? Syscall.peek(fd, into: peekBuffer), count > 0 else { return false }
            let bytes = UnsafeRawBufferPointer(rebasing: peekBuffer[0..<count])
            guard case .complete(let length) = PeekedHead(bytes, maximumHeadBytes: reactor.limits.maximumHeadBytes) else {
                return false
            }
            headArrived(fd, [UInt8](UnsafeRawBufferPointer(rebasing: bytes[0..<length])), acceptedAt: .now)
            return true
        }

        private func headArrived(_ fd: CInt, _ head: [UInt8], acceptedAt: ContinuousClock.Instant) {
            if reactor.onHead(fd, head, acceptedAt: acceptedAt, tokens: tokens, dispatcher: dispatcher) { handedOffThisTurn = true }
        }

        private func peek(token: UInt64, events: Epoll.Events) {
            guard let connection = pending[token] else { return }
            let count: Int?
            do {
                count = try Syscall.peek(connection.fd, into: peekBuffer)
            } catch {
                finish(token, connection) { Syscall.close($0) }
                return
            }
            guard let count else { return }  // woken without data: wait for the next edge
            if count == 0 {
                finish(token, connection) { Syscall.close($0) }  // closed before sending a whole head
                return
            }
            let bytes = UnsafeRawBufferPointer(rebasing: peekBuffer[0..<count])
            switch PeekedHead(bytes, maximumHeadBytes: reactor.limits.maximumHeadBytes) {
            case .complete(let length):
                let head = [UInt8](UnsafeRawBufferPointer(rebasing: bytes[0..<length]))
                let acceptedAt = connection.deadline - reactor.limits.headTimeout
                finish(token, connection) { headArrived($0, head, acceptedAt: acceptedAt) }
            case .tooLarge:
                finish(token, connection) { reactor.onRejected($0, .headTooLarge) }
            case .incomplete:
                if events.contains(.peerClosed) || events.contains(.hangUp) || events.contains(.error) {
                    finish(token, connection) { Syscall.close($0) }
                }
            }
        }

        /// Stops watching a connection and gives its descriptor to `next`.
        private func finish(_ token: UInt64, _ connection: Pending, _ next: (CInt) -> Void) {
            epoll.remove(connection.fd)
            pending[token] = nil
            if let client = connection.client { clientLimiter?.release(client) }
            next(connection.fd)
        }

        private func expireDeadlines(now: ContinuousClock.Instant) {
            while deadlinesHead < deadlines.count {
                let token = deadlines[deadlinesHead]
                if let connection = pending[token] {
                    guard connection.deadline <= now else { break }
                    finish(token, connection) { reactor.onRejected($0, .headTimeout) }
                }
                deadlinesHead += 1
            }
            if deadlinesHead > 4096, deadlinesHead * 2 > deadlines.count {
                deadlines.removeFirst(deadlinesHead)
                deadlinesHead = 0
            }
        }
    }
}
