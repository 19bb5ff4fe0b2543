import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Shared
import WorkerCore

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
        /// Bytes of event data and names the history may hold (`--history-bytes`).
        var historyBytes: Int
        /// `--max-topics-per-user`.
        var maximumTopicsPerUser: Int
        /// Sent to clients as `retry:` (milliseconds).
        var retryMilliseconds: Int
        /// How soon after a change the stats are reported.
        var statsDelay: TimeAmount = .milliseconds(100)
        /// A stream's `--max-pending-bytes`: queued-but-unflushed events count toward it, so a batch is
        /// flushed before it could make a stream that reads promptly look like a slow consumer.
        var maximumPendingBytes: Int = 1_048_576
    }

    let eventLoop: any EventLoop
    let settings: Settings
    let logger: Logger
    /// Users' topics, which belong to the user, not the socket, and outlive a closed stream by `topicGrace`. A user
    /// without topics has no entry there, which keeps an idle stream cheap.
    private var subscriptions: SubscriptionRegistry
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
    /// Writes a message to the supervisor (stats, subscription changes).
    private var toSupervisor: ((ControlMessage) -> Void)?
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
        history = EventHistory(capacity: settings.historySize, maximumAge: settings.historyTTL, maximumBytes: settings.historyBytes)
        subscriptions = SubscriptionRegistry(maximumTopicsPerUser: settings.maximumTopicsPerUser)
    }

    /// Starts the heartbeat and the sweep of users past their grace period; `send` writes (and flushes) a message
    /// to the supervisor: stats after changes, and every change of a user's topics.
    func start(send: @escaping (ControlMessage) -> Void) {
        toSupervisor = send
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
        let topics = subscriptions.topics(of: userID)
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
        guard let previous = liveStreams.updateValue(LiveStream(channel: channel, descriptor: descriptor), forKey: userID) else {
            subscriptions.userWentLive(userID)
            return
        }
        if let expiresAt = previous.expiresAt { forgetExpiry(of: userID, at: expiresAt) }
        // Only now: closing the old channel can run its close handlers (and `detach`) synchronously,
        // which must find the new stream in place.
        logger.info("a new stream replaces the user's previous one", metadata: ["user": "\(userID)"])
        Self.end(previous.channel)
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

    /// Users whose stream's token expires, by the second of expiry (see `ExpiryWheel`); an entry is cancelled
    /// when its stream closes or is replaced, and checked against `LiveStream.expiresAt` when due.
    private var expiries = ExpiryWheel<String>(now: WallClock.seconds())

    /// Ends the user's current stream at `expiresAt` (seconds since 1970).
    func endStream(userID: String, channel: any Channel, at expiresAt: Int64) {
        guard liveStreams[userID]?.channel === channel else { return }
        if expiries.schedule(userID, at: expiresAt) {
            liveStreams[userID]?.expiresAt = expiresAt
        } else {
            expire(userID: userID)
        }
    }

    /// Drops a closed or replaced stream's entry, so a churn of short streams with long tokens leaves nothing behind.
    private func forgetExpiry(of userID: String, at second: Int64) {
        expiries.cancel(userID, at: second)
    }

    private func expireDueStreams() {
        for (userID, second) in expiries.takeDue(now: WallClock.seconds()) where liveStreams[userID]?.expiresAt == second {
            expire(userID: userID)
        }
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
        guard let stream = liveStreams[userID], stream.channel === channel else { return }
        liveStreams[userID] = nil
        if let expiresAt = stream.expiresAt { forgetExpiry(of: userID, at: expiresAt) }
        subscriptions.userWentDark(userID, graceUntil: .now() + settings.topicGrace)
        statsChanged()
    }

    // MARK: Reload

    /// Passes every live stream on to the worker replacing this one: for each, once its queued frames are
    /// written, a duplicate of its descriptor goes to `send` with the user, the token expiry and the last event
    /// sequence written (the new worker continues after it), and this worker's copy is closed
    /// without ending the HTTP body, so the connection lives on. A stream whose frames are still stuck after
    /// `patience` is closed (its client reconnects and resumes). Then `done` runs. Topics need no passing on: the
    /// supervisor keeps every user's and gave them to the new worker when it started.
    func migrateAll(send: @escaping (CInt, Handoff) -> Bool, done: @escaping () -> Void, patience: TimeAmount = .seconds(3)) {
        eventLoop.preconditionInEventLoop()
        let lastWritten = history.latestSequence
        var remaining = liveStreams.count
        var finished = false
        let finish = {
            guard !finished else { return }
            finished = true
            done()
        }
        let streams = liveStreams
        for (userID, stream) in streams {
            let channel = stream.channel
            let handoff = Handoff(route: .migrated, userID: userID, tokenExpiry: stream.expiresAt, resumeAfter: lastWritten)
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

    /// Adds the user's topics, or refuses the whole request when it would take them past `--max-topics-per-user`.
    /// The supervisor hears of the change before the client does, so a crash right after cannot lose it.
    func subscribe(userID: String, topics: [String]) throws(SubscriptionRegistry.TooManyTopics) {
        eventLoop.preconditionInEventLoop()
        let added = try subscriptions.subscribe(
            userID, to: topics, isLive: liveStreams[userID] != nil, graceUntil: .now() + settings.topicGrace)
        if !added.isEmpty { report(UserTopics(userID: userID, topics: added), as: ControlMessage.subscribed) }
        statsChanged()
    }

    func unsubscribe(userID: String, topics: [String]) {
        eventLoop.preconditionInEventLoop()
        let removed = subscriptions.unsubscribe(userID, from: topics, isLive: liveStreams[userID] != nil)
        if !removed.isEmpty { report(UserTopics(userID: userID, topics: removed), as: ControlMessage.unsubscribed) }
        statsChanged()
    }

    /// Topics the supervisor kept for a user (this worker starts, or a retiring one changed them at the last
    /// moment): taken whatever the limit, since they were accepted once, and not reported back.
    func restoreTopics(_ restored: UserTopics) {
        eventLoop.preconditionInEventLoop()
        _ = try? subscriptions.subscribe(
            restored.userID, to: restored.topics, isLive: liveStreams[restored.userID] != nil,
            graceUntil: .now() + settings.topicGrace, enforcingLimit: false)
        statsChanged()
    }

    func dropTopics(_ dropped: UserTopics) {
        eventLoop.preconditionInEventLoop()
        _ = subscriptions.unsubscribe(dropped.userID, from: dropped.topics, isLive: liveStreams[dropped.userID] != nil)
        statsChanged()
    }

    /// Sends a user's topic change in frames of at most `ControlFrame.maximumListCount` topics.
    private func report(_ change: UserTopics, as message: (UserTopics) -> ControlMessage) {
        for part in change.chunks() { toSupervisor?(message(part)) }
    }

    private func forgetExpiredUsers() {
        let forgotten = subscriptions.forgetUsers(dueBy: .now())
        guard !forgotten.isEmpty else { return }
        for userID in forgotten { toSupervisor?(.forgotten(userID)) }
        logger.debug("forgot users past their grace period", metadata: ["count": "\(forgotten.count)"])
        statsChanged()
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
            for userID in subscriptions.subscribers[topic] ?? [] {
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

    /// Reports stats soon, once for a burst of changes: the stream count, and the counts of the topics that changed.
    private func statsChanged() {
        changedSinceTrim = true
        guard !statsScheduled, toSupervisor != nil else { return }
        statsScheduled = true
        let loopBound = NIOLoopBound(self, eventLoop: eventLoop)
        eventLoop.scheduleTask(in: settings.statsDelay) {
            let hub = loopBound.value
            hub.statsScheduled = false
            let report = StatsReport(clients: hub.liveStreams.count, topicCounts: hub.subscriptions.takeChangedCounts())
            for part in report.chunks() { hub.toSupervisor?(.stats(part)) }
        }
    }
}
