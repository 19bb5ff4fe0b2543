import Logging
import NIOCore
import Shared

/// A worker's users, their streams and their topics, composed of parts with one job each: `LiveStreams` (whose
/// stream is which, and when it ends), `SubscriptionRegistry` (topics), `StreamPreamble` (what a stream gets before
/// going live), `StreamDelivery` (publish and flush), `StreamMigration` (reload), `StatsReporter` and `HeapTrimmer`.
/// Lives on the worker's one event loop: every method is called there (`NIOLoopBound` enforces it), so there is
/// no lock and no race between a publish and a stream closing.
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
        /// A stream's `--max-pending-bytes` (see `StreamDelivery`).
        var maximumPendingBytes: Int = 1_048_576
        /// `--max-streams-per-user`: a user's streams on this worker (all of a user's are on one worker).
        var maximumStreamsPerUser = 1
        /// A hub across hosts: every stream that opens (`streamOpened`) and closes (`streamClosed`) is reported, by its
        /// name (`UserStream`): the hub counts a user's streams across hosts (`--max-streams-per-user`, presence), and
        /// the hub, not this worker, forgets users past their grace.
        var hubWideUsers = false
        /// Across hosts: how long a stream resuming from an event this host has not delivered yet waits for it
        /// before it is told `reset`.
        var resumeAheadPatience: TimeAmount = .seconds(2)
        /// `--presence-events`: the supervisor hears when a user comes online, and when one goes offline and stays
        /// so for this long (`--presence-grace`); nil: it hears nothing.
        var presenceGrace: TimeAmount?
    }

    let eventLoop: any EventLoop
    let settings: Settings
    let logger: Logger
    /// Users' topics, which belong to the user, not the socket, and outlive a closed stream by `topicGrace`. A user
    /// without topics has no entry there, which keeps an idle stream cheap.
    private var subscriptions: SubscriptionRegistry
    /// The live stream of each user that has one: what a publish walks, kept apart from the topics so a broadcast
    /// touches only sockets.
    private var streams: LiveStreams
    private var delivery: StreamDelivery
    private let preamble: StreamPreamble
    /// What this worker's users could have received lately, for Last-Event-ID replay.
    private var history: EventHistory
    /// False until the supervisor has sent the history from before this worker started: streams that arrive before
    /// then wait in `waitingStreams`, so none resumes from a history with a hole in it.
    private var hasHistory = false
    private var waitingStreams: [() -> Void] = []
    /// Across hosts: streams resuming from an event this host has not delivered yet (it was delivered by the host the
    /// client came from, a moment ahead of this one), held until this host reaches it (`resumeAheadPatience`).
    private var resumesAhead: [UInt64: (sequence: UInt64, attach: () -> Void)] = [:]
    private var resumesAheadHeld: UInt64 = 0
    /// Writes a message to the supervisor (stats, subscription changes); set by `start`.
    private var toSupervisor: ((ControlMessage) -> Void)?
    private var acknowledgements = ChangeAcknowledgements()
    private var stats: StatsReporter?
    /// What this worker counted (with `delivery`'s frames and bytes), and what the supervisor last heard.
    private var counters = WorkerCounters()
    private var countersReported = WorkerCounters()
    private let trimmer = HeapTrimmer()
    /// Users whose last stream closed, in their `--presence-grace`: a stream that opens in it cancels the offline.
    private var goingOffline: [String: Scheduled<Void>] = [:]
    /// Passing its streams on (reload): their closing here is not the users going offline.
    private var retiring = false

    init(eventLoop: any EventLoop, settings: Settings, logger: Logger) {
        self.eventLoop = eventLoop
        self.settings = settings
        self.logger = logger
        history = EventHistory(capacity: settings.historySize, maximumAge: settings.historyTTL, maximumBytes: settings.historyBytes)
        subscriptions = SubscriptionRegistry(maximumTopicsPerUser: settings.maximumTopicsPerUser)
        delivery = StreamDelivery(maximumPendingBytes: settings.maximumPendingBytes)
        streams = LiveStreams(now: WallClock.seconds(), maximumPerUser: settings.maximumStreamsPerUser)
        preamble = StreamPreamble(frames: EventFrames(epoch: settings.epoch), retryMilliseconds: settings.retryMilliseconds)
    }

    /// Starts the heartbeat, the sweep of users past their grace period, the expiry of streams and the heap trim;
    /// `send` writes (and flushes) a message to the supervisor: stats after changes, and every change of a user's topics.
    func start(send: @escaping (ControlMessage) -> Void) {
        eventLoop.preconditionInEventLoop()
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
            loopBound.value.expireDueStreams(now: WallClock.seconds())
        }
        trimmer.start(on: eventLoop)
        eventLoop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
            loopBound.value.reportCounters()
        }
        stats = StatsReporter(eventLoop: eventLoop, delay: settings.statsDelay) { [weak self] in self?.reportStats() }
        statsChanged()
    }

    // MARK: Streams

    /// Makes `socket` one of the user's live streams, ending the oldest past the limit, sends the response head, `connected`
    /// (with `retry:`), then what the user missed since `lastEventID` (or `reset` when that is unknowable), then
    /// live events. All in one turn of the event loop, so nothing published meanwhile is missed or sent twice.
    func attach(
        userID: String, socket: StreamSocket, lastEventID: String?, tokenExpiry: Int64?, responseHead: ByteBuffer,
        waited: Bool = false
    ) {
        eventLoop.preconditionInEventLoop()
        guard hasHistory else {
            waitingStreams.append { [unowned self] in
                attach(
                    userID: userID, socket: socket, lastEventID: lastEventID, tokenExpiry: tokenExpiry, responseHead: responseHead)
            }
            return
        }
        guard socket.isOpen else { return }
        if settings.hubWideUsers, !waited, let id = lastEventID.flatMap(EventID.init), id.epoch == settings.epoch,
            id.sequence > history.latestSequence
        {
            holdUntilReached(id.sequence) { [unowned self] in
                attach(
                    userID: userID, socket: socket, lastEventID: lastEventID, tokenExpiry: tokenExpiry, responseHead: responseHead,
                    waited: true)
            }
            return
        }
        let (stream, wasLive) = makeLive(userID: userID, socket: socket)
        let ordinal = stream.ordinal
        if !wasLive { cameOnline(userID) }
        if settings.hubWideUsers { toSupervisor?(.streamOpened(UserStream(userID: userID, openedAt: stream.openedAt))) }
        history.trim(now: WallClock.milliseconds())
        let opening = preamble.opening(
            head: responseHead, userID: userID, lastEventID: lastEventID, history: history, isRecipient: recipientTest(for: userID))
        if opening.isReset { logger.info("stream resumes from an id outside the history: reset", metadata: ["user": "\(userID)"]) }
        if lastEventID != nil {
            if opening.isReset { counters.resets += 1 } else { counters.resumes += 1 }
        }
        counters.bytesWritten &+= UInt64(opening.bytes.readableBytes)
        socket.writeAndFlush(opening.bytes)
        if let tokenExpiry { endStream(userID: userID, ordinal: ordinal, at: tokenExpiry) }
        statsChanged()
    }

    /// Holds a resume until this host has delivered `sequence` (then `attach` replays from the history as usual), or
    /// until the patience runs out (then `attach` finds the id still ahead: `reset`).
    private func holdUntilReached(_ sequence: UInt64, attach: @escaping () -> Void) {
        resumesAheadHeld &+= 1
        let key = resumesAheadHeld
        resumesAhead[key] = (sequence, attach)
        eventLoop.assumeIsolated().scheduleTask(in: settings.resumeAheadPatience) { [unowned self] in
            resumesAhead.removeValue(forKey: key)?.attach()
        }
    }

    private func releaseResumesReached() {
        guard !resumesAhead.isEmpty else { return }
        let latest = history.latestSequence
        let reached = resumesAhead.filter { $0.value.sequence <= latest }
        for (key, resume) in reached.sorted(by: { $0.key < $1.key }) {
            resumesAhead.removeValue(forKey: key)
            resume.attach()
        }
    }

    /// Continues a stream a retiring worker passed on (reload): no greeting, only the events after the last one
    /// its old worker wrote, then live ones; the client sees one unbroken stream.
    func attachMigrated(socket: StreamSocket, handoff: Handoff) {
        eventLoop.preconditionInEventLoop()
        guard hasHistory else {
            waitingStreams.append { [unowned self] in attachMigrated(socket: socket, handoff: handoff) }
            return
        }
        guard socket.isOpen else { return }
        let userID = handoff.userID
        let (stream, _) = makeLive(userID: userID, socket: socket, openedAt: handoff.openedAt)
        let ordinal = stream.ordinal
        // A stream from a worker of a release that did not name its streams: the hub has never counted it.
        if settings.hubWideUsers, handoff.openedAt == nil {
            toSupervisor?(.streamOpened(UserStream(userID: userID, openedAt: stream.openedAt)))
        }
        if let missed = preamble.continuation(
            after: handoff.resumeAfter ?? history.latestSequence, history: history, isRecipient: recipientTest(for: userID))
        {
            socket.writeAndFlush(missed)
        }
        if let expiry = handoff.tokenExpiry { endStream(userID: userID, ordinal: ordinal, at: expiry) }
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

    /// Makes `socket` one of the user's live streams, ending (cleanly, after `replaced`) the oldest past the limit;
    /// returns it, and whether the user had a stream here before.
    private func makeLive(
        userID: String, socket: StreamSocket, openedAt: Int64? = nil
    ) -> (stream: LiveStreams.Stream, wasLive: Bool) {
        let wasLive = streams.isLive(userID)
        let (stream, replaced) = streams.makeLive(userID, socket: socket, openedAt: openedAt)
        if !wasLive { subscriptions.userWentLive(userID) }
        for old in replaced {
            logger.info("a new stream replaces the user's oldest one", metadata: ["user": "\(userID)", "event": "stream-replaced"])
            reportClosed(userID, old)
            Self.replace(old.socket)
        }
        return (stream, wasLive)
    }

    /// Across hosts, the hub counts the user's streams: this one is gone. Not while retiring, when a stream that closes
    /// here lives on in the successor, unless it could not be passed on (`lost`).
    private func reportClosed(_ userID: String, _ stream: LiveStreams.Stream, lost: Bool = false) {
        guard settings.hubWideUsers, !retiring || lost else { return }
        toSupervisor?(.streamClosed(UserStream(userID: userID, openedAt: stream.openedAt)))
    }

    private static let replacedChunk = SSEWireFormat.chunk(SSEWireFormat.event("replaced", data: #"{"reason":"replaced"}"#))

    /// A newer stream of the user took this one's place: say so (an app can stop this tab's reconnecting instead of
    /// two tabs taking the stream from each other), and end it.
    private static func replace(_ socket: StreamSocket) {
        socket.write(replacedChunk)
        socket.end()
    }

    /// The supervisor's history from before this worker started.
    func recordHistory(_ command: PublishCommand) {
        eventLoop.preconditionInEventLoop()
        if command.sequence > history.latestSequence { history.append(command) }
    }

    /// The history is complete: serve the streams that waited for it.
    func historyComplete(_ bounds: HistoryBounds) {
        eventLoop.preconditionInEventLoop()
        history.note(evictedThrough: bounds.evictedThrough, latestSequence: bounds.latestSequence)
        hasHistory = true
        let waiting = waitingStreams
        waitingStreams = []
        for attachStream in waiting { attachStream() }
        // Bounds sent again later (a hole the shared log left) can move past a held resume's event: it resumes, with `reset`.
        releaseResumesReached()
    }

    /// Ends the user's stream `ordinal` at `expiresAt` (seconds since 1970), at once when that is past.
    func endStream(userID: String, ordinal: UInt64, at expiresAt: Int64) {
        if streams.expire(userID, ordinal: ordinal, at: expiresAt) == .due, let socket = streams.expireNow(userID, ordinal: ordinal) {
            expire(userID: userID, socket: socket)
        }
    }

    func expireDueStreams(now: Int64) {
        for (userID, socket) in streams.takeExpired(now: now) { expire(userID: userID, socket: socket) }
    }

    private static let tokenExpiredChunk = SSEWireFormat.chunk(SSEWireFormat.event("token-expired", data: #"{"reason":"token-expired"}"#))

    /// The stream's token expired: say so, and end it; the client reconnects with a fresh token.
    private func expire(userID: String, socket: StreamSocket) {
        logger.info("stream's token expired", metadata: ["user": "\(userID)"])
        socket.write(Self.tokenExpiredChunk)
        socket.end()
    }

    /// The stream `socket` closed; if it was still one of the user's live streams, it is not now.
    func detach(socket: StreamSocket) {
        eventLoop.preconditionInEventLoop()
        let userID = socket.userID
        let (removed, userLeft) = streams.remove(userID, socket: socket)
        guard let removed else { return }
        reportClosed(userID, removed)
        if userLeft {
            subscriptions.userWentDark(userID, graceUntil: .now() + settings.topicGrace)
            wentOffline(userID)
        }
        statsChanged()
    }

    /// The hub ended this stream: newer ones of the user opened on other hosts, past `--max-streams-per-user`. It ends
    /// here as a newer stream on this host would end it (`.every`: every stream of the user here).
    func endStream(_ named: UserStream) {
        eventLoop.preconditionInEventLoop()
        streams.forEachStream(of: named.userID) { stream in
            guard named.isEvery || stream.openedAt == named.openedAt else { return }
            logger.info(
                "newer streams of the user opened on other hosts; ending this one", metadata: ["user": "\(named.userID)", "event": "stream-replaced"])
            Self.replace(stream.socket)
        }
    }

    // MARK: Reload and shutdown

    /// Passes every live stream on to the worker replacing this one (see `StreamMigration`), then runs `done`.
    func migrateAll(send: @escaping (CInt, Handoff) -> Bool, done: @escaping () -> Void, patience: TimeAmount = .seconds(3)) {
        retiring = true
        StreamMigration.passOn(
            streams, lastWritten: history.latestSequence, eventLoop: eventLoop, logger: logger, patience: patience,
            send: send,
            lost: { [unowned self] userID, stream in
                // Its client reconnects; until then the hub must not count it.
                reportClosed(userID, stream, lost: true)
            },
            done: done)
    }

    /// Closes every stream cleanly (on shutdown).
    func endAllStreams() {
        streams.forEachStream { _, stream in stream.socket.end() }
    }

    // MARK: Topics

    /// Adds the user's topics, or refuses the whole request when it would take them past `--max-topics-per-user`.
    /// The supervisor hears of the change before the client does, so a crash right after cannot lose it.
    func subscribe(userID: String, topics: [String]) throws(SubscriptionRegistry.TooManyTopics) {
        eventLoop.preconditionInEventLoop()
        let added = try subscriptions.subscribe(
            userID, to: topics, isLive: streams.isLive(userID), graceUntil: .now() + settings.topicGrace)
        if !added.isEmpty { report(UserTopics(userID: userID, topics: added), as: ControlMessage.subscribed) }
        statsChanged()
    }

    func unsubscribe(userID: String, topics: [String]) {
        eventLoop.preconditionInEventLoop()
        let removed = subscriptions.unsubscribe(userID, from: topics, isLive: streams.isLive(userID))
        if !removed.isEmpty { report(UserTopics(userID: userID, topics: removed), as: ControlMessage.unsubscribed) }
        statsChanged()
    }

    /// Calls `answer` once the topic changes reported so far are in the hub's log (at once, committed, on one host).
    func whenChangesLogged(_ answer: @escaping (_ committed: Bool) -> Void) {
        eventLoop.preconditionInEventLoop()
        guard settings.hubWideUsers, let toSupervisor else { return answer(true) }
        toSupervisor(acknowledgements.ask(answer))
    }

    func changesLogged(_ token: UInt64, committed: Bool) {
        eventLoop.preconditionInEventLoop()
        acknowledgements.answered(token, committed: committed)
    }

    /// Topics the supervisor kept for a user (this worker starts, or a retiring one changed them at the last
    /// moment): taken whatever the limit, since they were accepted once, and not reported back.
    func restoreTopics(_ restored: UserTopics) {
        eventLoop.preconditionInEventLoop()
        do {
            _ = try subscriptions.subscribe(
                restored.userID, to: restored.topics, isLive: streams.isLive(restored.userID),
                graceUntil: .now() + settings.topicGrace, enforcingLimit: false)
        } catch {
            // Unreachable: only an enforced limit refuses.
            logger.error("restored topics refused", metadata: ["user": "\(restored.userID)", "limit": "\(error.limit)"])
        }
        statsChanged()
    }

    func dropTopics(_ dropped: UserTopics) {
        eventLoop.preconditionInEventLoop()
        _ = subscriptions.unsubscribe(dropped.userID, from: dropped.topics, isLive: streams.isLive(dropped.userID))
        statsChanged()
    }

    /// Sends a user's topic change in frames of at most `ControlFrame.maximumListCount` topics.
    private func report(_ change: UserTopics, as message: (UserTopics) -> ControlMessage) {
        for part in change.chunks() { toSupervisor?(message(part)) }
    }

    private func forgetExpiredUsers() {
        // Across hosts the user may be live elsewhere: the hub forgets them (and says so with `dropTopics`).
        guard !settings.hubWideUsers else { return }
        let forgotten = subscriptions.forgetUsers(dueBy: .now())
        guard !forgotten.isEmpty else { return }
        for userID in forgotten { toSupervisor?(.forgotten(userID)) }
        logger.debug("forgot users past their grace period", metadata: ["count": "\(forgotten.count)"])
        statsChanged()
    }

    // MARK: Delivery

    /// Records one event and queues it on its recipients' streams; the frame is encoded once and the same bytes
    /// go to every stream. Nothing is sent until `flushPublished()`, which the control channel calls once per read (and
    /// before any other message that touches the streams).
    func publish(_ command: PublishCommand) {
        eventLoop.preconditionInEventLoop()
        history.append(command)
        var event = ByteBuffer()
        preamble.frames.write(command, into: &event)
        delivery.queue(
            SSEWireFormat.chunk(event), for: command.target, streams: streams, subscribers: subscriptions.subscribers)
        // After the queueing: a stream released now replays this event from the history, and must not get it twice.
        releaseResumesReached()
    }

    /// Sends what `publish` queued.
    func flushPublished() {
        delivery.flush(streams: streams)
    }

    private static let heartbeatChunk = SSEWireFormat.chunk(SSEWireFormat.heartbeat)

    private func sendHeartbeats() {
        streams.forEachStream { _, stream in stream.socket.writeAndFlush(Self.heartbeatChunk) }
    }

    // MARK: Presence

    /// What this worker knows of a presence question: a topic's subscribers with a live stream here, or a user's
    /// streams and topics; one page of names after the cursor, in `<` order. A topic's subscribers are filtered and
    /// sorted per page (O(n log n) in the topic's subscribers here), which a request at a time can afford.
    func presence(_ query: PresenceQuery) -> PresenceAnswer {
        eventLoop.preconditionInEventLoop()
        func page(_ names: some Sequence<String>) -> (names: [String], more: Bool) {
            let after = query.after
            let sorted = names.filter { after == nil || $0 > after! }.sorted()
            return (Array(sorted.prefix(query.limit)), sorted.count > query.limit)
        }
        switch query.subject {
        case .topic(let topic):
            let (names, more) = page((subscriptions.subscribers[topic] ?? []).lazy.filter(streams.isLive))
            return PresenceAnswer(id: query.id, names: names, counts: names.map { UInt32(streams.count(of: $0)) }, more: more)
        case .user(let userID):
            let (names, more) = page(subscriptions.topics(of: userID))
            return PresenceAnswer(
                id: query.id, names: names, streams: UInt32(streams.count(of: userID)), since: streams.onlineSince(userID) ?? 0, more: more)
        }
    }

    /// The user's first stream here opened: online, unless they were only away for less than the grace.
    private func cameOnline(_ userID: String) {
        guard settings.presenceGrace != nil else { return }
        if let pending = goingOffline.removeValue(forKey: userID) {
            pending.cancel()
            return
        }
        toSupervisor?(.presenceChanged(userID, online: true))
    }

    /// The user's last stream here closed: offline once the grace passes without a new one.
    private func wentOffline(_ userID: String) {
        guard let grace = settings.presenceGrace, !retiring else { return }
        goingOffline[userID]?.cancel()
        goingOffline[userID] = eventLoop.assumeIsolated().scheduleTask(in: grace) { [unowned self] in
            goingOffline[userID] = nil
            guard !streams.isLive(userID), !retiring else { return }
            toSupervisor?(.presenceChanged(userID, online: false))
        }
    }

    // MARK: Stats

    /// More than `--max-pending-bytes` waited to be sent: the client stopped reading. It is dropped rather than grow
    /// this worker's memory; it reconnects and resumes from its last id.
    func slowConsumerDropped(_ socket: StreamSocket) {
        logger.warning(
            "slow consumer disconnected: too many bytes pending", metadata: ["user": "\(socket.userID)", "event": "slow-consumer-disconnected"])
        counters.slowConsumersDropped += 1
    }

    /// The counters, when they changed since the last report (a supervisor older than them is not sent any).
    private func reportCounters() {
        var now = counters
        now.eventsDelivered = delivery.framesWritten
        now.bytesWritten = counters.bytesWritten &+ delivery.bytesWritten
        guard now != countersReported else { return }
        countersReported = now
        toSupervisor?(.counters(now))
    }

    private func statsChanged() {
        trimmer.noteChange()
        stats?.changed()
    }

    /// The stream count, and the counts of the topics that changed since the last report.
    private func reportStats() {
        let report = StatsReport(clients: streams.count, topicCounts: subscriptions.takeChangedCounts())
        for part in report.chunks() { toSupervisor?(.stats(part)) }
    }
}
