import Foundation
import Shared
import Testing

/// `--max-streams-per-user N`: a user's N streams (tabs) all get the user's events and topics; the (N+1)th ends the
/// oldest, which is told `replaced` first; each stream resumes by its own `Last-Event-ID`.
@Suite(.serialized) struct SeveralTabsTests {
    @Test func everyTabGetsTheUsersEventsAndTheOldestIsReplacedPastTheLimit() async throws {
        let hub = try await HubProcess.start(workers: 2, arguments: ["--max-streams-per-user", "2"])
        defer { Task { try await hub.stop() } }
        let tab1 = try await hub.openStream("alice")
        let tab2 = try await hub.openStream("alice")
        let bob = try await hub.openStream("bob")
        defer { Task { for stream in [tab1, tab2, bob] { await stream.close() } } }
        #expect(try await hub.subscribe("alice", ["news"]).status == 200)
        try await waitUntil("three streams counted") { try await hub.stats().totalClients == 3 }
        #expect(try await hub.publish(#"{"topic":"news","event":"headline","data":{"n":1}}"#).status == 200)
        #expect(try await hub.publish(#"{"userId":"alice","event":"direct","data":{"n":2}}"#).status == 200)
        #expect(try await hub.publish(#"{"event":"all","data":{"n":3}}"#).status == 200)
        for tab in [tab1, tab2] {
            try await tab.waitForEvent("all")
            #expect(tab.events.map(\.event) == ["connected", "headline", "direct", "all"])
        }
        try await bob.waitForEvent("all")
        #expect(bob.events.map(\.event) == ["connected", "all"])

        // A third tab: the oldest (tab1) is told why, and ends; the other two stay.
        let tab3 = try await hub.openStream("alice")
        defer { Task { await tab3.close() } }
        try await tab1.waitForClose()
        #expect(tab1.events.last?.event == "replaced" && tab1.events.last?.data == #"{"reason":"replaced"}"#)
        #expect(tab1.connection.snapshot.ended)
        #expect(!tab2.isClosed)
        #expect(try await hub.publish(#"{"topic":"news","event":"headline","data":{"n":4}}"#).status == 200)
        try await tab2.waitForEvent("headline", count: 2)
        try await tab3.waitForEvent("headline")
        try await waitUntil("three streams counted after the replacement") { try await hub.stats().totalClients == 3 }
    }

    @Test func eachTabResumesByItsOwnLastEventID() async throws {
        let hub = try await HubProcess.start(workers: 1, arguments: ["--max-streams-per-user", "3"])
        defer { Task { try await hub.stop() } }
        let tab1 = try await hub.openStream("carol")
        let tab2 = try await hub.openStream("carol")
        defer { Task { await tab2.close() } }
        for n in 1...2 { #expect(try await hub.publish(#"{"userId":"carol","event":"n","data":\#(n)}"#).status == 200) }
        let seen = try await tab1.waitForEvent("n", count: 2)
        await tab1.close()
        // tab1 is gone; two more events; tab1 comes back from its last id and gets exactly what it missed.
        for n in 3...4 { #expect(try await hub.publish(#"{"userId":"carol","event":"n","data":\#(n)}"#).status == 200) }
        try await tab2.waitForEvent("n", count: 4)
        let resumed = try await SSETestStream.open(
            port: hub.port, target: "/api/sse/stream?token=\(try await hub.token("carol"))", headers: ["Last-Event-ID": seen[0].id ?? ""])
        defer { Task { await resumed.close() } }
        let replayed = try await resumed.waitForEvent("n", count: 3)
        #expect(replayed.map(\.data) == ["2", "3", "4"])
        #expect(tab2.events(named: "n").map(\.data) == ["1", "2", "3", "4"])
        #expect(!tab2.isClosed, "a third stream within the limit replaces nothing")
    }

    /// Across hosts the hub counts a user's streams wherever they are: the oldest in the log's order is ended, on
    /// whichever host holds it, and each host's own limit is the same hub-wide one.
    @Test func acrossHostsTheHubCountsTheUsersTabsAndEndsTheOldestWhereverItIs() async throws {
        let cluster = try await TestCluster.start(hosts: 2, workers: 2, arguments: ["--max-streams-per-user", "2"])
        defer { Task { await cluster.stop() } }
        let (a, b) = (cluster.hosts[0], cluster.hosts[1])
        func streamsCounted(_ count: Int) async throws {
            try await waitUntil("the hub to count \(count) of alice's streams") {
                let answer = try await PresenceTests.presence(b, "userId=alice")
                return try PresenceTests.decode(UserPresenceBody.self, answer).streams == count
            }
        }
        let a1 = try await a.openStream("alice")
        try await streamsCounted(1)
        let b1 = try await b.openStream("alice")
        try await streamsCounted(2)
        // A third tab, on A: the oldest in the hub is a1 (on A too).
        let a2 = try await a.openStream("alice")
        try await a1.waitForClose()
        #expect(a1.events.last?.event == "replaced")
        try await streamsCounted(2)
        // A fourth, on A again: now the oldest is b1, on the other host.
        let a3 = try await a.openStream("alice")
        try await b1.waitForClose()
        #expect(b1.events.last?.event == "replaced" && b1.connection.snapshot.ended)
        #expect(!a2.isClosed && !a3.isClosed)
        try await streamsCounted(2)
        #expect(try await b.publishNumbered("direct", 1, userID: "alice").status == 200)
        for tab in [a2, a3] { #expect(try await tab.waitForEvent("direct").map(\.data) == [#"{"n":1}"#]) }
        // Closing a tab frees its place: a new one on B replaces nobody.
        await a2.close()
        try await streamsCounted(1)
        let b2 = try await b.openStream("alice")
        try await streamsCounted(2)
        #expect(try await a.publishNumbered("direct", 2, userID: "alice").status == 200)
        try await b2.waitForEvent("direct")
        #expect(!a3.isClosed && a3.events(named: "replaced").isEmpty)
        await cluster.stop()
    }
}
