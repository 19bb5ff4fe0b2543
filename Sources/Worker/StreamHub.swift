import Foundation
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
        var epoch: UInt64
        var historySize: Int
        /// Milliseconds.
        var historyTTL: Int64
        /// Sent to clients as `retry:` (milliseconds).
        var retryMilliseconds: Int
        /// How soon after a change the stats are reported.
        var statsDelay: TimeAmount = .milliseconds(100)
        /// A stream's `--max-pending-bytes`: queued-but-unflushed events count toward it, so a batch is
        /// flushed before it could make a stream that reads promptly look like a slow consumer.
        var maximumPendingBytes: Int = 1_048_576
    }

    /// What a user has besides a stream (which is in `liveStreams`): topics, which belong to the user, not the
    /// socket, and outlive a closed stream by `topicGrace`. A user without topics has no entry, which keeps an
    /// idle stream cheap.
    struct User {
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
    /// The live stream of each user that has one: what a publish walks, kept apart from `users` so a
    /// broadcast touches only channels (no copies of users' topic sets).
    private var liveStreams: [String: LiveStream] = [:]

    /// A user's one live stream: its channel, its socket descriptor (so a reload can pass the connection on),
    /// and when its token expires. Everything an idle stream costs the hub is this one entry.
    struct LiveStream {
        var channel: any Channel
        var descriptor: CInt
        var expiresAt: Int64?
    }
    private var statsScheduled = false
    private var reportStats: ((WorkerStats) -> Void)?
    /// What this worker's users could have received lately, for Last-Event-ID replay.
    private var history: EventHistory
    /// False until the supervisor has sent the history from before this worker started: streams that
    /// arrive before then wait in `waitingStreams`, so none resumes from a history with a hole in it.
    private var hasHistory = false
    private var waitingStreams: [() -> Void] = []

    init(eventLoop: any EventLoop, settings: Settings, logger: Logger) {
        self.eventLoop = eventLoop
        self.settings = settings
        self.logger = logger
        history = EventHistory(capacity: settings.historySize, maximumAge: settings.historyTTL)
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
        eventLoop.scheduleRepeatedTask(initialDelay: .milliseconds(250), delay: .milliseconds(250)) { _ in
            loopBound.value.expireDueStreams()
        }
        // After connections come and go, give freed memory back (a burst of set-ups leaves a lot behind).
        eventLoop.scheduleRepeatedTask(initialDelay: .seconds(2), delay: .seconds(2)) { _ in
            let hub = loopBound.value
            if hub.changedSinceTrim {
                hub.changedSinceTrim = false
                Syscall.releaseFreeMemory()
            }
        }
        statsChanged()
    }

    private var changedSinceTrim = false

    // MARK: Streams

    /// Makes `channel` the user's one live stream, closing any earlier one, sends the response head, `connected`
    /// (with `retry:`), then what the user missed since `lastEventID` (or `reset` when that is unknowable), then
    /// live events. All in one turn of the event loop, so nothing published meanwhile is missed or sent twice.
    func attach(
        userID: String, channel: any Channel, descriptor: CInt, lastEventID: String?, tokenExpiry: Int64?, responseHead: ByteBuffer
    ) {
        eventLoop.preconditionInEventLoop()
        guard hasHistory else {
            waitingStreams.append { [unowned self] in
                self.attach(
                    userID: userID, channel: channel, descriptor: descriptor, lastEventID: lastEventID, tokenExpiry: tokenExpiry,
                    responseHead: responseHead)
            }
            return
        }
        guard channel.isActive else { return }
        makeLive(userID: userID, channel: channel, descriptor: descriptor)
        var greeting = ByteBuffer(string: "retry: \(settings.retryMilliseconds)\n")
        SSEWireFormat.event("connected", data: ConnectedEventData(userId: userID).json, into: &greeting)
        history.trim(now: WallClock.milliseconds())
        switch history.resumption(after: lastEventID, epoch: settings.epoch, isRecipient: recipientTest(for: userID)) {
        case .live:
            break
        case .reset:
            logger.info("stream resumes from an id outside the history: reset", metadata: ["user": "\(userID)"])
            SSEWireFormat.event("reset", data: HubJSON.encode(ResetEventData(lastEventId: lastEventID ?? "")), into: &greeting)
        case .replay(let missed):
            for command in missed { encodeFrame(command, into: &greeting) }
        }
        var response = responseHead
        SSEWireFormat.writeChunk(greeting, into: &response)
        write(response, to: channel)
        if let tokenExpiry { endStream(userID: userID, channel: channel, at: tokenExpiry) }
        statsChanged()
    }

    /// Continues a stream a retiring worker passed on (reload): no greeting, only the events after the last one
    /// its old worker wrote, then live ones; the client sees one unbroken stream.
    func attachMigrated(channel: any Channel, descriptor: CInt, handoff: Handoff) {
        eventLoop.preconditionInEventLoop()
        guard hasHistory else {
            waitingStreams.append { [unowned self] in self.attachMigrated(channel: channel, descriptor: descriptor, handoff: handoff) }
            return
        }
        guard channel.isActive else { return }
        let userID = handoff.userID
        if !handoff.topics.isEmpty { subscribe(userID: userID, topics: handoff.topics) }
        makeLive(userID: userID, channel: channel, descriptor: descriptor)
        var missed = ByteBuffer()
        let isRecipient = recipientTest(for: userID)
        for command in history.entries(after: handoff.resumeAfter ?? history.latestSequence) where isRecipient(command.target) {
            encodeFrame(command, into: &missed)
        }
        if missed.readableBytes > 0 { write(SSEWireFormat.chunk(missed), to: channel) }
        if let expiry = handoff.tokenExpiry { endStream(userID: userID, channel: channel, at: expiry) }
        statsChanged()
    }

    /// Whether an event for `target` reaches `userID` (with the user's topics as they are now).
    private func recipientTest(for userID: String) -> (PublishTarget) -> Bool {
        let topics = users[userID]?.topics ?? []
        return { target in
            switch target {
            case .everyone: true
            case .topic(let topic): topics.contains(topic)
            case .user(let recipient): recipient == userID
            }
        }
    }

    /// Makes `channel` the user's one live stream, ending (cleanly) any earlier one.
    private func makeLive(userID: String, channel: any Channel, descriptor: CInt) {
        let previous = liveStreams.updateValue(LiveStream(channel: channel, descriptor: descriptor), forKey: userID)?.channel
        users[userID]?.forgetAt = nil
        // Only now: closing the old channel can run its close handlers (and `detach`) synchronously,
        // which must find the new stream in place.
        if let previous {
            logger.info("a new stream replaces the user's previous one", metadata: ["user": "\(userID)"])
            Self.end(previous)
        }
    }

    /// The supervisor's history from before this worker started.
    func recordHistory(_ command: PublishCommand) {
        if command.sequence > history.latestSequence { history.append(command) }
    }

    /// The history is complete: serve the streams that waited for it.
    func historyComplete(_ bounds: HistoryBounds) {
        history.note(evictedThrough: bounds.evictedThrough, latestSequence: bounds.latestSequence)
        hasHistory = true
        let waiting = waitingStreams
        waitingStreams = []
        for attachStream in waiting { attachStream() }
    }

    /// Users whose stream's token expires, by the second of expiry (checked against `LiveStream.expiresAt`,
    /// so entries left by a closed or replaced stream are ignored). One timer for all of them: a scheduled
    /// task per stream would cost more memory than the rest of an idle stream's state.
    private var expiries: [Int64: [String]] = [:]
    private var expiryCheckedThrough = Int64((Date().timeIntervalSince1970).rounded(.down))

    /// Ends the user's current stream at `expiresAt` (seconds since 1970).
    func endStream(userID: String, channel: any Channel, at expiresAt: Int64) {
        guard liveStreams[userID]?.channel === channel else { return }
        if expiresAt <= expiryCheckedThrough {
            expire(userID: userID)
        } else {
            liveStreams[userID]?.expiresAt = expiresAt
            expiries[expiresAt, default: []].append(userID)
        }
    }

    private func expireDueStreams() {
        let now = Int64((Date().timeIntervalSince1970).rounded(.down))
        guard now > expiryCheckedThrough else { return }
        let due = expiries.keys.filter { $0 <= now }
        for second in due {
            for userID in expiries.removeValue(forKey: second) ?? [] where liveStreams[userID]?.expiresAt == second {
                expire(userID: userID)
            }
        }
        expiryCheckedThrough = now
    }

    /// The stream's token expired: say so, and end it; the client reconnects with a fresh token.
    private func expire(userID: String) {
        guard let channel = liveStreams[userID]?.channel else { return }
        liveStreams[userID]?.expiresAt = nil
        logger.info("stream's token expired", metadata: ["user": "\(userID)"])
        write(SSEWireFormat.chunk(SSEWireFormat.event("token-expired", data: #"{"reason":"token-expired"}"#)), to: channel)
        Self.end(channel)
    }


    private func encodeFrame(_ command: PublishCommand, into buffer: inout ByteBuffer) {
        SSEWireFormat.event(
            command.event, data: command.data, id: EventID(epoch: settings.epoch, sequence: command.sequence).description,
            into: &buffer)
    }

    /// The stream `channel` closed; if it was still the user's live stream, the user has none now.
    func detach(userID: String, channel: any Channel) {
        eventLoop.preconditionInEventLoop()
        guard liveStreams[userID]?.channel === channel else { return }
        liveStreams[userID] = nil
        if let user = users[userID] { keepOrForget(userID, user) }
        statsChanged()
    }

    /// Stores `user`, with a grace period when there is no stream, or drops the entry when it holds nothing.
    private func keepOrForget(_ userID: String, _ user: User) {
        var user = user
        if liveStreams[userID] == nil {
            user.forgetAt = user.topics.isEmpty ? nil : .now() + settings.topicGrace
        }
        users[userID] = user.topics.isEmpty ? nil : user
    }

    // MARK: Reload

    /// Passes every live stream on to the worker replacing this one: for each, once its queued frames are
    /// written, a duplicate of its descriptor goes to `send` with the user, the topics, the token expiry and the
    /// last event sequence written (the new worker continues after it), and this worker's copy is closed
    /// without ending the HTTP body, so the connection lives on. A stream whose frames are still stuck after
    /// `patience` is closed (its client reconnects and resumes). Then users with topics and no stream go to
    /// `sendUser`, and `done` runs.
    func migrateAll(
        send: @escaping (CInt, Handoff) -> Bool, sendUser: @escaping (MigratedUser) -> Void, done: @escaping () -> Void,
        patience: TimeAmount = .seconds(3)
    ) {
        eventLoop.preconditionInEventLoop()
        let lastWritten = history.latestSequence
        var remaining = liveStreams.count
        var finished = false
        let finish = { [unowned self] in
            guard !finished else { return }
            finished = true
            for (userID, user) in users where liveStreams[userID] == nil && !user.topics.isEmpty {
                sendUser(MigratedUser(userID: userID, topics: Array(user.topics)))
            }
            done()
        }
        let streams = liveStreams
        for (userID, stream) in streams {
            let channel = stream.channel
            let handoff = Handoff(
                route: .migrated, userID: userID, tokenExpiry: stream.expiresAt, resumeAfter: lastWritten,
                topics: Array(users[userID]?.topics ?? []))
            let descriptor: CInt? = stream.descriptor
            channel.writeAndFlush(ByteBuffer()).hop(to: eventLoop).assumeIsolated().whenComplete { [unowned self] result in
                if case .success = result, let descriptor, let copy = try? Syscall.duplicate(descriptor) {
                    let passed = send(copy, handoff)
                    Syscall.close(copy)
                    if !passed { logger.warning("a stream could not be passed on; it reconnects", metadata: ["user": "\(userID)"]) }
                }
                channel.close(promise: nil)
                remaining -= 1
                if remaining == 0 { finish() }
            }
        }
        if streams.isEmpty { finish() }
        eventLoop.scheduleTask(in: patience) {
            for stream in streams.values where stream.channel.isActive { stream.channel.close(promise: nil) }
        }
    }

    /// A user with topics and no stream, passed on by a retiring worker.
    func adoptUser(_ user: MigratedUser) {
        subscribe(userID: user.userID, topics: user.topics)
    }

    /// Closes every stream cleanly (on shutdown).
    func endAllStreams() {
        for stream in liveStreams.values { Self.end(stream.channel) }
    }

    /// Ends a stream's chunked body and closes the connection.
    private static func end(_ channel: any Channel) {
        channel.writeAndFlush(SSEWireFormat.lastChunk).whenComplete { _ in
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
        if liveStreams[userID] == nil { user.forgetAt = .now() + settings.topicGrace }
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
        for (userID, user) in users where liveStreams[userID] == nil && (user.forgetAt ?? now) <= now {
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

    /// Records one event and queues it on its recipients' streams. The frame is encoded once and the same
    /// bytes go to every stream. Nothing is sent until `flushPublished()`, which the control channel calls once
    /// per read: when publishes arrive faster than they are delivered, each stream then gets all the events
    /// of a read in one `writev` instead of one syscall per event; when they do not, nothing waits.
    func publish(_ command: PublishCommand) {
        eventLoop.preconditionInEventLoop()
        history.append(command)
        var event = ByteBuffer()
        encodeFrame(command, into: &event)
        let frame = SSEWireFormat.chunk(event)
        if unflushedBytes + frame.readableBytes > settings.maximumPendingBytes / 4 { flushPublished() }
        unflushedBytes += frame.readableBytes
        switch command.target {
        case .everyone:
            for stream in liveStreams.values { stream.channel.write(frame, promise: nil) }
            unflushedEveryone = true
        case .topic(let topic):
            for userID in subscribers[topic] ?? [] {
                if let stream = liveStreams[userID] { queue(frame, on: stream.channel) }
            }
        case .user(let userID):
            if let stream = liveStreams[userID] { queue(frame, on: stream.channel) }
        }
    }

    /// Streams written to since the last flush (besides every stream, after a broadcast).
    private var unflushed: [ObjectIdentifier: any Channel] = [:]
    private var unflushedEveryone = false
    /// Bytes queued since the last flush: the most any one stream has waiting unflushed.
    private var unflushedBytes = 0

    private func queue(_ frame: ByteBuffer, on stream: any Channel) {
        stream.write(frame, promise: nil)
        unflushed[ObjectIdentifier(stream)] = stream
    }

    /// Sends what `publish` queued.
    func flushPublished() {
        if unflushedEveryone {
            for stream in liveStreams.values { stream.channel.flush() }
        } else {
            for stream in unflushed.values { stream.flush() }
        }
        unflushed.removeAll(keepingCapacity: true)
        unflushedEveryone = false
        unflushedBytes = 0
    }

    private static let heartbeatChunk = SSEWireFormat.chunk(SSEWireFormat.heartbeat)

    private func sendHeartbeats() {
        for stream in liveStreams.values { write(Self.heartbeatChunk, to: stream.channel) }
    }

    /// Writes an already chunk-encoded frame.
    private func write(_ chunk: ByteBuffer, to channel: any Channel) {
        channel.writeAndFlush(chunk, promise: nil)
    }

    // MARK: Stats

    var stats: WorkerStats {
        var topics: [String: Int] = [:]
        for (topic, userIDs) in subscribers {
            let connected = userIDs.reduce(0) { $0 + (liveStreams[$1] != nil ? 1 : 0) }
            if connected > 0 { topics[topic] = connected }
        }
        return WorkerStats(clients: liveStreams.count, topics: topics)
    }

    /// Reports stats soon, once for a burst of changes.
    private func statsChanged() {
        changedSinceTrim = true
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
