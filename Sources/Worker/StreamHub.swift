import Logging
import NIOCore
import NIOHTTP1
import Shared

/// A worker's users, their streams and their topics. Lives on the worker's one event loop: every method
/// is called there (`NIOLoopBound` enforces it), so there is no lock and no race between a publish and a
/// stream closing.
final class StreamHub {
    struct Settings: Sendable {
        var heartbeat: TimeAmount
        var topicGrace: TimeAmount
        /// How soon after a change the stats are reported.
        var statsDelay: TimeAmount = .milliseconds(100)
    }

    /// One user's state. Topics belong to the user, not the socket: they outlive a closed stream by `topicGrace`.
    struct User {
        var stream: (any Channel)?
        var topics: Set<String> = []
        /// When a user without a stream is forgotten (and their topics with them).
        var forgetAt: NIODeadline?
    }

    let eventLoop: any EventLoop
    let settings: Settings
    let logger: Logger
    private var users: [String: User] = [:]
    /// topic → users subscribed to it (with or without an open stream).
    private var subscribers: [String: Set<String>] = [:]
    private var openStreams = 0
    private var statsScheduled = false
    private var reportStats: ((WorkerStats) -> Void)?

    init(eventLoop: any EventLoop, settings: Settings, logger: Logger) {
        self.eventLoop = eventLoop
        self.settings = settings
        self.logger = logger
    }

    /// Starts the heartbeat and the sweep of users past their grace period; `report` receives stats after changes.
    func start(report: @escaping (WorkerStats) -> Void) {
        reportStats = report
        let loopBound = NIOLoopBound(self, eventLoop: eventLoop)
        eventLoop.scheduleRepeatedTask(initialDelay: settings.heartbeat, delay: settings.heartbeat) { _ in
            loopBound.value.sendHeartbeats()
        }
        let sweepEvery = TimeAmount.nanoseconds(
            max(1_000_000_000, min(30_000_000_000, settings.topicGrace.nanoseconds / 10)))
        eventLoop.scheduleRepeatedTask(initialDelay: sweepEvery, delay: sweepEvery) { _ in
            loopBound.value.forgetExpiredUsers()
        }
        statsChanged()
    }

    // MARK: Streams

    /// Makes `channel` the user's one live stream, closing any earlier one, and sends `connected`.
    func attach(userID: String, channel: any Channel) {
        eventLoop.preconditionInEventLoop()
        var user = users[userID] ?? User()
        let previous = user.stream
        if previous == nil { openStreams += 1 }
        user.stream = channel
        user.forgetAt = nil
        users[userID] = user
        // Only now: closing the old channel can run its close handlers (and `detach`) synchronously,
        // which must find the new stream in place.
        if let previous {
            logger.info("a new stream replaces the user's previous one", metadata: ["user": "\(userID)"])
            Self.end(previous)
        }
        write(SSEWireFormat.event("connected", data: HubJSON.encode(ConnectedEventData(userId: userID))), to: channel)
        statsChanged()
    }

    /// The stream `channel` closed; if it was still the user's live stream, the user has none now.
    func detach(userID: String, channel: any Channel) {
        eventLoop.preconditionInEventLoop()
        guard var user = users[userID], let current = user.stream, current === channel else { return }
        user.stream = nil
        openStreams -= 1
        keepOrForget(userID, user)
        statsChanged()
    }

    private func keepOrForget(_ userID: String, _ user: User) {
        var user = user
        if user.stream == nil {
            if user.topics.isEmpty {
                users[userID] = nil
                return
            }
            user.forgetAt = .now() + settings.topicGrace
        }
        users[userID] = user
    }

    /// Closes every stream cleanly (on shutdown).
    func endAllStreams() {
        for user in users.values {
            if let stream = user.stream { Self.end(stream) }
        }
    }

    /// Ends a stream's chunked body and closes the connection.
    private static func end(_ channel: any Channel) {
        channel.writeAndFlush(HTTPServerResponsePart.end(nil)).whenComplete { _ in
            channel.close(promise: nil)
        }
    }

    // MARK: Topics

    func subscribe(userID: String, topics: [String]) {
        eventLoop.preconditionInEventLoop()
        var user = users[userID] ?? User()
        for topic in topics where user.topics.insert(topic).inserted {
            subscribers[topic, default: []].insert(userID)
        }
        if user.stream == nil { user.forgetAt = .now() + settings.topicGrace }
        users[userID] = user
        statsChanged()
    }

    func unsubscribe(userID: String, topics: [String]) {
        eventLoop.preconditionInEventLoop()
        guard var user = users[userID] else { return }
        for topic in topics where user.topics.remove(topic) != nil {
            removeSubscriber(userID, from: topic)
        }
        keepOrForget(userID, user)
        statsChanged()
    }

    private func removeSubscriber(_ userID: String, from topic: String) {
        subscribers[topic]?.remove(userID)
        if subscribers[topic]?.isEmpty == true { subscribers[topic] = nil }
    }

    private func forgetExpiredUsers() {
        let now = NIODeadline.now()
        var forgotten = 0
        for (userID, user) in users where user.stream == nil && (user.forgetAt ?? now) <= now {
            for topic in user.topics { removeSubscriber(userID, from: topic) }
            users[userID] = nil
            forgotten += 1
        }
        if forgotten > 0 {
            logger.debug("forgot users past their grace period", metadata: ["count": "\(forgotten)"])
            statsChanged()
        }
    }

    // MARK: Delivery

    /// Delivers one event. The frame is encoded once and the same bytes are written to every stream.
    func publish(_ command: PublishCommand) {
        eventLoop.preconditionInEventLoop()
        let frame = SSEWireFormat.event(command.event, data: command.data)
        switch command.target {
        case .everyone:
            for user in users.values {
                if let stream = user.stream { write(frame, to: stream) }
            }
        case .topic(let topic):
            for userID in subscribers[topic] ?? [] {
                if let stream = users[userID]?.stream { write(frame, to: stream) }
            }
        case .user(let userID):
            if let stream = users[userID]?.stream { write(frame, to: stream) }
        }
    }

    private func sendHeartbeats() {
        for user in users.values {
            if let stream = user.stream { write(SSEWireFormat.heartbeat, to: stream) }
        }
    }

    private func write(_ frame: ByteBuffer, to channel: any Channel) {
        channel.writeAndFlush(HTTPServerResponsePart.body(.byteBuffer(frame)), promise: nil)
    }

    // MARK: Stats

    var stats: WorkerStats {
        var topics: [String: Int] = [:]
        for (topic, userIDs) in subscribers {
            let connected = userIDs.reduce(0) { $0 + (users[$1]?.stream != nil ? 1 : 0) }
            if connected > 0 { topics[topic] = connected }
        }
        return WorkerStats(clients: openStreams, topics: topics)
    }

    /// Reports stats soon, once for a burst of changes.
    private func statsChanged() {
        guard !statsScheduled, reportStats != nil else { return }
        statsScheduled = true
        let loopBound = NIOLoopBound(self, eventLoop: eventLoop)
        eventLoop.scheduleTask(in: settings.statsDelay) {
            let hub = loopBound.value
            hub.statsScheduled = false
            hub.reportStats?(hub.stats)
        }
    }
}
