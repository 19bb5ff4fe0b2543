import Logging
import PostgresNIO
import Shared
import SupervisorCore

/// Appends HTTP publishes to the log in group commits: while one batch is being written, the publishes that arrive
/// wait together and go in the next, in one statement (`sse_hub.append_batch`), so the log costs one round trip per
/// batch, not per event. Each publish is answered once its batch has committed, with its position.
actor GroupCommitWriter {
    struct Busy: Error, CustomStringConvertible {
        var description: String { "too many publishes are waiting for the log" }
    }

    private struct Waiting {
        var request: PublishRequest
        var continuation: CheckedContinuation<UInt64, any Error>
    }

    private let client: PostgresClient
    private let link: LinkMonitor
    private let logger: Logger
    /// The most publishes one statement carries, and the most that may wait (past it: 503 at once).
    private let batchLimit: Int
    private let waitingLimit: Int
    /// How long a batch may take before its publishers are told it was not confirmed.
    private let timeout: Duration
    private var waiting: [Waiting] = []
    private var writing = false

    init(client: PostgresClient, link: LinkMonitor, logger: Logger, batchLimit: Int = 1000, waitingLimit: Int = 50_000, timeout: Duration = .seconds(5)) {
        self.client = client
        self.link = link
        self.logger = logger
        self.batchLimit = batchLimit
        self.waitingLimit = waitingLimit
        self.timeout = timeout
    }

    func append(_ request: PublishRequest) async throws -> UInt64 {
        // While the log is known to be down, refuse at once rather than make every publisher wait out the timeout;
        // the link is probed as soon as it is lost, so a blip costs milliseconds of refusals.
        guard await link.isReachable else { throw SharedLogUnavailable(reason: "the database is unreachable") }
        guard waiting.count < waitingLimit else { throw Busy() }
        return try await withCheckedThrowingContinuation { continuation in
            waiting.append(Waiting(request: request, continuation: continuation))
            if !writing {
                writing = true
                Task { await self.drain() }
            }
        }
    }

    private func drain() async {
        while !waiting.isEmpty {
            let batch = Array(waiting.prefix(batchLimit))
            waiting.removeFirst(batch.count)
            do {
                let first = try await write(batch.map(\.request))
                for (offset, entry) in batch.enumerated() { entry.continuation.resume(returning: first + UInt64(offset)) }
                await link.succeeded()
            } catch {
                for entry in batch { entry.continuation.resume(throwing: SharedLogUnavailable(reason: DatabaseErrorText.describe(error))) }
                await link.failed(error, while: "appending publishes")
            }
        }
        writing = false
    }

    private func write(_ requests: [PublishRequest]) async throws -> UInt64 {
        let columns = BatchColumns(requests)
        let (client, logger) = (client, logger)
        return try await Deadline.run(within: timeout) {
            let rows = try await client.query(
                "SELECT sse_hub.append_batch(\(columns.events), \(columns.datas), \(columns.topics), \(columns.users))", logger: logger)
            guard let first = try await rows.single(Int64.self), first > 0 else {
                throw SharedLogUnavailable(reason: "the log gave no position")
            }
            return UInt64(first)
        }
    }
}

/// A batch of publishes as `sse_hub.append_batch`'s four arrays. They hold no NULL: an empty name (never a valid
/// one) stands for no topic, or no user.
struct BatchColumns: Sendable {
    var events: [String] = []
    var datas: [String] = []
    var topics: [String] = []
    var users: [String] = []

    init(_ requests: [PublishRequest]) {
        for request in requests {
            events.append(request.event)
            datas.append(request.data)
            switch request.target {
            case .everyone:
                topics.append("")
                users.append("")
            case .topic(let topic):
                topics.append(topic)
                users.append("")
            case .user(let user):
                topics.append("")
                users.append(user)
            }
        }
    }
}
