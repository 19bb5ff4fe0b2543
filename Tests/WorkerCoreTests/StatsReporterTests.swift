import NIOCore
import NIOEmbedded
import Shared
import Testing
@testable import WorkerCore

@Suite struct StatsReporterTests {
    final class Count {
        var value = 0
    }

    @Test func aBurstOfChangesGivesOneReportAfterTheDelay() {
        let loop = EmbeddedEventLoop()
        let reports = Count()
        let reporter = StatsReporter(eventLoop: loop, delay: .milliseconds(100)) { reports.value += 1 }
        for _ in 0..<50 { reporter.changed() }
        loop.advanceTime(by: .milliseconds(99))
        #expect(reports.value == 0)
        loop.advanceTime(by: .milliseconds(1))
        #expect(reports.value == 1)
        reporter.changed()
        loop.advanceTime(by: .milliseconds(50))
        reporter.changed()
        loop.advanceTime(by: .milliseconds(50))
        #expect(reports.value == 2, "a change while a report is due joins it")
        loop.advanceTime(by: .seconds(1))
        #expect(reports.value == 2, "no change, no report")
    }

    /// Through the hub: streams arriving together are one report of the stream count and of the topics that changed.
    @Test func theHubReportsABurstOfStreamsOnce() throws {
        let fixture = HubFixture()
        fixture.historyArrived()
        fixture.start()
        fixture.loop.advanceTime(by: .milliseconds(100))
        _ = fixture.takeSent()
        try fixture.hub.subscribe(userID: "alice", topics: ["news"])
        #expect(fixture.takeSent() == [.subscribed(UserTopics(userID: "alice", topics: ["news"]))])
        let streams = try ["alice", "bob", "carol"].map { try fixture.openStream($0) }
        fixture.loop.advanceTime(by: .milliseconds(100))
        #expect(fixture.takeSent() == [.stats(StatsReport(clients: 3, topicCounts: ["news": 1]))])
        streams[0].leave()
        fixture.sockets.processReadiness()
        fixture.loop.advanceTime(by: .milliseconds(100))
        #expect(fixture.takeSent() == [.stats(StatsReport(clients: 2, topicCounts: ["news": 0]))])
    }
}
