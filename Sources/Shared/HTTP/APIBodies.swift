/// JSON bodies of the HTTP API.
public struct FailureBody: Codable, Sendable, Equatable {
    public var success = false
    public var msg: String

    public init(msg: String) { self.msg = msg }
}

public struct TopicsResponse: Codable, Sendable, Equatable {
    public var success = true
    public var msg: String
    public var topics: [String]

    public init(msg: String, topics: [String]) {
        self.msg = msg
        self.topics = topics
    }
}

public struct SuccessBody: Codable, Sendable, Equatable {
    public var success = true
    public init() {}

    /// The body encoded, once: every accepted publish is answered with it.
    public static let encoded = HubJSON.encode(SuccessBody())
}

public struct ConnectedEventData: Codable, Sendable, Equatable {
    public var message = "Connected to SSE stream"
    public var userId: String

    public init(userId: String) { self.userId = userId }

    /// What `HubJSON.encode(self)` writes, without a `JSONEncoder`: sent on every new stream.
    public var json: String { #"{"message":"# + HubJSON.quoted(message) + #","userId":"# + HubJSON.quoted(userId) + "}" }
}

/// The data of `event: unavailable`: the stream's worker is restarting; the client reconnects after `retryMs`.
public struct UnavailableEventData: Codable, Sendable, Equatable {
    public var reason = "worker-unavailable"
    public var msg: String
    public var retryMs: Int

    public init(msg: String, retryMs: Int) {
        self.msg = msg
        self.retryMs = retryMs
    }
}

/// The data of `event: reset`: the stream could not resume from `lastEventId`; refetch state.
public struct ResetEventData: Codable, Sendable, Equatable {
    public var reason = "history-gap"
    public var lastEventId: String

    public init(lastEventId: String) { self.lastEventId = lastEventId }
}

public struct StatsBody: Codable, Sendable, Equatable {
    /// One host's share of a hub that spans several (`hosts`, absent on a single host).
    public struct HostTotals: Codable, Sendable, Equatable {
        public var totalClients: Int
        public var totalTopics: Int

        public init(totalClients: Int, totalTopics: Int) {
            self.totalClients = totalClients
            self.totalTopics = totalTopics
        }
    }

    public var totalClients: Int
    public var totalTopics: Int
    public var topics: [String: Int]
    public var hosts: [String: HostTotals]?

    public init(totalClients: Int, topics: [String: Int], hosts: [String: HostTotals]? = nil) {
        self.totalClients = totalClients
        totalTopics = topics.count
        self.topics = topics
        self.hosts = hosts
    }
}

/// A client error with its HTTP status and message, answered as `{"success":false,"msg":...}`.
public struct APIError: Error, Sendable, Equatable {
    public var status: Int
    public var message: String
    /// The `Allow` header of a 405.
    public var allow: String?

    public init(status: Int, _ message: String, allow: String? = nil) {
        self.status = status
        self.message = message
        self.allow = allow
    }

    public static let malformedJSON = APIError(status: 400, "Malformed JSON body")
    public static let bodyTooLarge = APIError(status: 413, "Request body over 64 KiB")
    public static let notFound = APIError(status: 404, "Not found")
    /// Over `--max-head-bytes`.
    public static let headTooLarge = APIError(status: 431, "Request head too large")
    /// An `Expect` field asking for something other than `100-continue` (RFC 9110 §10.1.1).
    public static let expectationFailed = APIError(status: 417, "Only the expectation 100-continue is supported")
    /// A request (its body, usually) that did not arrive whole within `--request-timeout`.
    public static let requestTimeout = APIError(status: 408, "Request not received in time")
    /// Across hosts: a topic change applied on this host that the hub's log could not confirm.
    public static let topicsNotLogged = APIError(
        status: 503, "The event log is unavailable; the topics apply on this host now and on the other hosts once it is back")
    public static let invalidTopics = APIError(
        status: 400, "topics must be an array of at most 100 names of 1-128 characters [A-Za-z0-9_.:-]")

    /// A subscribe that would take a user past `--max-topics-per-user`; nothing of it was applied.
    public static func tooManyTopics(limit: Int) -> APIError {
        APIError(status: 409, "A user may hold at most \(limit) topics; unsubscribe from some first")
    }

    /// A request whose `--auth-cookie` token differs from the one it carries in the query or a header.
    public static let conflictingTokens = APIError(
        status: 400, "The token in the cookie differs from the token in the query or a header; send one token")

    /// A cookie token from a page of an origin `--cors-origin` does not list (a cross-site request riding on it).
    public static let cookieFromOtherOrigin = APIError(
        status: 403, "A token in a cookie is accepted only from the origins the server lists (--cors-origin)")

    public static func methodNotAllowed(_ route: APIRoute) -> APIError {
        APIError(status: 405, "Method not allowed (use \(route.method.rawValue))", allow: route.method.rawValue)
    }

    public init(_ failure: AuthFailure) {
        self.init(status: failure.status, failure.message)
    }
}

/// `GET /api/sse/presence?topic=T`: the topic's subscribers that have a live stream, one page of them.
public struct TopicPresenceBody: Codable, Sendable, Equatable {
    public struct User: Codable, Sendable, Equatable {
        public var userId: String
        public var streams: Int

        public init(userId: String, streams: Int) {
            self.userId = userId
            self.streams = streams
        }
    }

    public var success = true
    public var topic: String
    public var users: [User]
    /// Present when there is a next page: pass it back as `cursor`.
    public var nextCursor: String?

    public init(topic: String, users: [User], nextCursor: String?) {
        self.topic = topic
        self.users = users
        self.nextCursor = nextCursor
    }
}

/// `GET /api/sse/presence?userId=U`: whether the user has a live stream, since when, and (a page of) their topics.
public struct UserPresenceBody: Codable, Sendable, Equatable {
    public var success = true
    public var userId: String
    public var online: Bool
    public var streams: Int
    /// When the user's oldest live stream opened (ISO 8601, UTC, milliseconds); absent when offline.
    public var since: String?
    public var topics: [String]
    public var nextCursor: String?

    public init(userId: String, online: Bool, streams: Int, since: String?, topics: [String], nextCursor: String?) {
        self.userId = userId
        self.online = online
        self.streams = streams
        self.since = since
        self.topics = topics
        self.nextCursor = nextCursor
    }
}

/// `sse-supervisor ctl workers`: one worker process (a shard has two while a reload replaces its worker).
public struct WorkerRow: Codable, Sendable, Equatable {
    public var shard: Int
    public var pid: Int32
    /// `up`, `starting`, `retiring` (a reload's predecessor, passing its streams on) or `stopping`.
    public var state: String
    /// The shard's live streams, as its worker last reported them (on the newest worker of the shard).
    public var streams: Int
    public var memoryKiB: Int?
    public var uptimeSeconds: Double
    /// The shard's restarts since the supervisor started (crashes and hangs; not reloads).
    public var restarts: Int

    public init(shard: Int, pid: Int32, state: String, streams: Int, memoryKiB: Int?, uptimeSeconds: Double, restarts: Int) {
        self.shard = shard
        self.pid = pid
        self.state = state
        self.streams = streams
        self.memoryKiB = memoryKiB
        self.uptimeSeconds = uptimeSeconds
        self.restarts = restarts
    }
}
