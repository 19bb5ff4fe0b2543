import Logging
import Shared
import SupervisorCore
import Testing

@testable import PostgresLog

/// How one read of the log (events, and the users' changes made between them) becomes the one order every host
/// applies.
@Suite struct LogBatchTests {
    let logger = Logger(label: "test")

    func event(_ id: UInt64) -> PublishCommand {
        PublishCommand(target: .everyone, event: "e", data: "\(id)", sequence: id, publishedAt: 0)
    }

    func changes(_ rows: [(seq: UInt64, after: UInt64, user: String, kind: String, topic: String?, host: String)]) -> LoggedChanges {
        var changes = LoggedChanges()
        for row in rows {
            changes.add(
                seq: row.seq, after: row.after, userID: row.user, kind: row.kind, topic: row.topic, hostID: row.host,
                openedAt: row.kind == "replaced" ? Int64(row.seq) * 1000 : 0, logger: logger)
        }
        return changes
    }

    @Test func aChangeWrittenAfterEventKComesBetweenKAndKPlusOne() {
        let batch = LogBatch.merge(
            events: [event(11), event(12), event(13)], lastEventRead: 13,
            changes: changes([
                (1, 10, "u", "replaced", nil, "a"), (2, 11, "u", "subscribed", "news", "a"), (3, 13, "v", "replaced", nil, "b"),
                (4, 13, "v", "stream", nil, "b"),
            ]),
            cursor: SharedLogCursor(event: 10, change: 0), eventsFull: false, changesFull: false)
        #expect(
            batch.entries == [
                .userChange(.replaced(UserStream(userID: "u", openedAt: 1000)), hostID: "a"), .event(event(11)),
                .userChange(.subscribed(UserTopics(userID: "u", topics: ["news"])), hostID: "a"), .event(event(12)), .event(event(13)),
                .userChange(.replaced(UserStream(userID: "v", openedAt: 3000)), hostID: "b"),
            ], "a stream's opening is the database's to count: hosts read past it")
        #expect(batch.through == SharedLogCursor(event: 13, change: 4))
        #expect(!batch.more)
    }

    @Test func rowsOfOneChangeFoldBackIntoIt() {
        let folded = changes([
            (1, 5, "u", "subscribed", "a", "h"), (2, 5, "u", "subscribed", "b", "h"), (3, 5, "u", "unsubscribed", "a", "h"),
            (4, 5, "w", "subscribed", "c", "h"), (5, 6, "w", "subscribed", "d", "h"),
        ])
        #expect(folded.grouped.map(\.change) == [
            .subscribed(UserTopics(userID: "u", topics: ["a", "b"])), .unsubscribed(UserTopics(userID: "u", topics: ["a"])),
            .subscribed(UserTopics(userID: "w", topics: ["c"])), .subscribed(UserTopics(userID: "w", topics: ["d"])),
        ])
        #expect(folded.rows == 5 && folded.lastRow?.seq == 5)
    }

    /// When the changes stopped at their limit, a later change may belong before a later event: the events stop
    /// where the last change read was written, and the next read continues from there.
    @Test func changesAtTheirLimitHoldBackTheEventsAfterThem() {
        let batch = LogBatch.merge(
            events: [event(1), event(2), event(3)], lastEventRead: 3, changes: changes([(1, 1, "u", "replaced", nil, "a")]),
            cursor: SharedLogCursor(event: 0, change: 0), eventsFull: false, changesFull: true)
        #expect(batch.entries == [.event(event(1)), .userChange(.replaced(UserStream(userID: "u", openedAt: 1000)), hostID: "a")])
        #expect(batch.through == SharedLogCursor(event: 1, change: 1))
        #expect(batch.more)
    }

    @Test func aRowTheHubDoesNotKnowIsSkippedButPassed() {
        let folded = changes([(7, 1, "u", "teleported", nil, "a")])
        #expect(folded.grouped.isEmpty)
        let batch = LogBatch.merge(
            events: [], lastEventRead: 1, changes: folded, cursor: SharedLogCursor(event: 1, change: 6), eventsFull: false, changesFull: false)
        #expect(batch.entries.isEmpty)
        #expect(batch.through == SharedLogCursor(event: 1, change: 7))
    }

    @Test func anEventRowBreakingTheHubsRulesIsNeverDelivered() {
        #expect(LogEvent.command(id: 1, event: "bad\nname", data: "{}", topic: nil, userID: nil, publishedAt: 0, logger: logger) == nil)
        #expect(LogEvent.command(id: 2, event: "ok", data: "{}", topic: "bad topic", userID: nil, publishedAt: 0, logger: logger) == nil)
        #expect(LogEvent.command(id: 3, event: "ok", data: "{}", topic: nil, userID: "", publishedAt: 0, logger: logger) == nil)
        #expect(
            LogEvent.command(id: 4, event: "ok", data: "{}", topic: nil, userID: "42", publishedAt: 9, logger: logger)
                == PublishCommand(target: .user("42"), event: "ok", data: "{}", sequence: 4, publishedAt: 9))
    }

    @Test func batchesAreColumnsWithNoNull() {
        let columns = BatchColumns([
            PublishRequest(target: .everyone, event: "a", data: "1"), PublishRequest(target: .topic("t"), event: "b", data: "2"),
            PublishRequest(target: .user("u"), event: "c", data: "3"),
        ])
        #expect(columns.events == ["a", "b", "c"] && columns.datas == ["1", "2", "3"])
        #expect(columns.topics == ["", "t", ""] && columns.users == ["", "", "u"])
        let changes = ChangeColumns([
            .subscribed(UserTopics(userID: "u", topics: ["x", "y"])), .streamOpened(UserStream(userID: "u", openedAt: 7), shard: 2),
            .streamClosed(UserStream(userID: "u", openedAt: 7)), .streamClosed(.every(of: "v")), .streamsLost(shard: 1),
            .forgotten(userID: "u"), .replaced(UserStream(userID: "u", openedAt: 7)),
        ])
        #expect(changes.kinds == ["subscribed", "subscribed", "stream", "closed", "closed", "lost"])
        #expect(changes.users == ["u", "u", "u", "u", "v", ""])
        #expect(changes.topics == ["x", "y", "", "", "", ""])
        #expect(changes.stamps == [0, 0, 7, 7, 0, 0] && changes.shards == [-1, -1, 2, -1, -1, 1])
    }

    @Test func retriesBackOffFromATenthOfASecondToFiveSeconds() {
        let delay = RetryDelay()
        #expect(delay.after(failures: 1) == .milliseconds(100))
        #expect(delay.after(failures: 2) == .milliseconds(200))
        #expect(delay.after(failures: 7) == .seconds(5))
        #expect(delay.after(failures: 1000) == .seconds(5))
    }
}
