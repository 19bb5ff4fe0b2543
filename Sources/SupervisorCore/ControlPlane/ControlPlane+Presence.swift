import Foundation
import Logging
import NIOCore
import Shared

/// Who is online (`GET /api/sse/presence`, `--presence-events`). The workers hold the answer (which users have a live
/// stream, since when, with which topics), so a question is put to the workers concerned and their pages are merged;
/// nothing is kept or reported per connection for it. A user's presence events go to the user's topics, which the
/// plane's ledger holds.
extension ControlPlane {
    /// A presence question in flight: the workers still to answer, and what the others said.
    struct PresenceGathering {
        var promise: EventLoopPromise<Result<PresencePage, APIError>>
        var waitingFor: Set<ObjectIdentifier>
        var answers: [PresenceAnswer] = []
        var limit: Int
    }

    /// How long a worker may take to answer before the question is answered 503.
    static let presencePatience: TimeAmount = .seconds(3)

    /// Asks the workers that know (every shard's for a topic, the user's shard's for a user) and merges their pages;
    /// across hosts, asks the hub's log, which counts every host's streams.
    func presence(_ subject: PresenceQuery.Subject, after: String?, limit: Int) -> EventLoopFuture<Result<PresencePage, APIError>> {
        eventLoop.preconditionInEventLoop()
        if let sharedLog {
            return eventLoop.makeFutureWithTask { [logger] in
                do {
                    return .success(try await sharedLog.presence(subject, after: after, limit: limit))
                } catch {
                    logger.warning("the event log could not answer a presence question", metadata: ["error": "\(error)", "event": "presence-unavailable"])
                    return .failure(APIError(status: 503, "The event log is unavailable; retry shortly"))
                }
            }
        }
        let shardsAsked: [Int] =
            switch subject {
            case .topic: Array(shards.indices)
            case .user(let userID): [shard(of: userID)]
            }
        var workers: [(WorkerHandle, any Channel)] = []
        for shard in shardsAsked {
            guard let worker = shards[shard].state.serving, let control = worker.control, Self.speaksPresence(control) else {
                return eventLoop.makeSucceededFuture(.failure(APIError(status: 503, "Worker \(shard) cannot answer now; retry shortly")))
            }
            workers.append((worker, control))
        }
        presenceQueriesAsked &+= 1
        let id = presenceQueriesAsked
        let promise = eventLoop.makePromise(of: Result<PresencePage, APIError>.self)
        presenceGatherings[id] = PresenceGathering(
            promise: promise, waitingFor: Set(workers.map { ObjectIdentifier($0.0) }), limit: limit)
        let query = PresenceQuery(id: id, subject: subject, after: after, limit: limit)
        for (_, control) in workers { control.writeAndFlush(ControlMessage.presenceQuery(query), promise: nil) }
        eventLoop.assumeIsolated().scheduleTask(in: Self.presencePatience) { [self] in
            guard let gathering = presenceGatherings.removeValue(forKey: id) else { return }
            logger.warning("a worker did not answer a presence question in time", metadata: ["event": "presence-timeout"])
            gathering.promise.succeed(.failure(APIError(status: 503, "A worker did not answer in time; retry shortly")))
        }
        return promise.futureResult
    }

    /// A worker of a release before presence would take the question for a protocol error (an in-place upgrade runs
    /// the previous release's workers until they are replaced).
    private static func speaksPresence(_ control: any Channel) -> Bool {
        let version = try? control.pipeline.syncOperations.handler(type: ControlFrameHandler.self).peerVersion
        return (version ?? nil).map { $0 >= ControlFrame.presenceVersion } ?? false
    }

    func presenceAnswered(_ answer: PresenceAnswer, by worker: WorkerHandle) {
        guard var gathering = presenceGatherings[answer.id], gathering.waitingFor.remove(ObjectIdentifier(worker)) != nil else { return }
        gathering.answers.append(answer)
        guard gathering.waitingFor.isEmpty else {
            presenceGatherings[answer.id] = gathering
            return
        }
        presenceGatherings[answer.id] = nil
        gathering.promise.succeed(.success(Self.merge(gathering.answers, limit: gathering.limit)))
    }

    /// Every worker's first page merged into the first `limit` names overall: there is a next page when any worker
    /// had more, or the pages together held more than `limit`.
    static func merge(_ answers: [PresenceAnswer], limit: Int) -> PresencePage {
        var entries: [(name: String, count: UInt32)] = []
        for answer in answers {
            for (index, name) in answer.names.enumerated() { entries.append((name, index < answer.counts.count ? answer.counts[index] : 0)) }
        }
        entries.sort { $0.name < $1.name }
        var page = PresencePage()
        let kept = entries.prefix(limit)
        page.names = kept.map(\.name)
        page.counts = kept.map(\.count)
        page.streams = answers.reduce(0) { $0 + $1.streams }
        page.since = answers.compactMap { $0.since > 0 ? $0.since : nil }.min()
        if entries.count > limit || answers.contains(where: \.more) { page.nextCursor = page.names.last }
        return page
    }

    /// `--presence-events` on one host: a worker says a user came online or went offline; the event goes to each of the
    /// user's topics, as a publisher's would. (Across hosts the log's own transactions publish them.)
    func presenceChanged(_ userID: String, online: Bool) {
        let topics = subscriptions.topics(of: userID, shard: shard(of: userID)).sorted()
        guard !topics.isEmpty else { return }
        let data = HubJSON.encode(JSONValue.object(["userId": .string(userID), "online": .bool(online)]))
        for topic in topics { _ = submit(PublishRequest(target: .topic(topic), event: "presence", data: data)) }
    }
}
