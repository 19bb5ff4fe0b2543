import Foundation
import Shared
import Testing

@Suite("A client's value cannot forge a log line")
struct LogInjectionTests {
    /// A signed token whose user id holds a line feed: the worker logs the user when a second stream replaces
    /// the first, and that line reaches the supervisor's stderr (plain text, not the journal) as one line.
    @Test func aUserIDWithALineFeedStaysOnItsLine() async throws {
        let hub = try await HubProcess.start(workers: 1)
        defer { Task { try await hub.stop() } }
        let userID = "mallory\nFAKE=1 critical forged line"
        let first = try await hub.openStream(userID)
        let second = try await hub.openStream(userID)
        try await first.waitForClose()
        try await waitUntil("the replacement logged") { !hub.logged("event=stream-replaced").isEmpty }
        let line = try #require(hub.log.split(separator: "\n").first { $0.contains(" event=stream-replaced ") })
        #expect(line.contains(#"user=mallory\nFAKE=1 critical forged line"#), "\(line)")
        #expect(!hub.log.split(separator: "\n").contains { $0.hasPrefix("FAKE=1") }, "\(hub.log)")
        await second.close()
    }
}
