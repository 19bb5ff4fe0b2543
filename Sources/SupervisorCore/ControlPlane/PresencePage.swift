/// One page of a presence answer: merged over the workers asked on one host, or read from the hub's log.
public struct PresencePage: Sendable {
    /// A topic: its users with a live stream and their stream counts, in `<` order. A user: their topics.
    public var names: [String] = []
    public var counts: [UInt32] = []
    /// A user: their live streams, and when the oldest opened (milliseconds since 1970).
    public var streams: UInt32 = 0
    public var since: Int64?
    /// The cursor of the next page, when there is one.
    public var nextCursor: String?

    public init(names: [String] = [], counts: [UInt32] = [], streams: UInt32 = 0, since: Int64? = nil, nextCursor: String? = nil) {
        self.names = names
        self.counts = counts
        self.streams = streams
        self.since = since
        self.nextCursor = nextCursor
    }
}
