import NIOCore
import Testing
import WorkerCore

@Suite struct SubscriptionRegistryTests {
    let grace = NIODeadline.uptimeNanoseconds(1_000_000_000)

    @Test func subscribeReturnsOnlyTopicsNewToTheUser() throws {
        var registry = SubscriptionRegistry(maximumTopicsPerUser: 10)
        #expect(try registry.subscribe("u", to: ["a", "b", "a"], isLive: false, graceUntil: grace) == ["a", "b"])
        #expect(try registry.subscribe("u", to: ["b", "c"], isLive: false, graceUntil: grace) == ["c"])
        #expect(registry.topics(of: "u") == ["a", "b", "c"])
        #expect(registry.subscribers["a"] == ["u"])
        #expect(registry.unsubscribe("u", from: ["a", "zzz"], isLive: false) == ["a"])
        #expect(registry.subscribers["a"] == nil, "a topic nobody holds is gone")
        #expect(registry.unsubscribe("u", from: ["b", "c"], isLive: false) == ["b", "c"])
        #expect(registry.users["u"] == nil, "a user holding nothing has no entry")
    }

    @Test func theLimitRefusesAWholeRequestAndCountsOnlyNewTopics() throws {
        var registry = SubscriptionRegistry(maximumTopicsPerUser: 3)
        _ = try registry.subscribe("u", to: ["a", "b"], isLive: false, graceUntil: grace)
        do {
            _ = try registry.subscribe("u", to: ["c", "d"], isLive: false, graceUntil: grace)
            Issue.record("a subscribe past the limit was accepted")
        } catch {
            #expect(error == SubscriptionRegistry.TooManyTopics(limit: 3))
        }
        #expect(registry.topics(of: "u") == ["a", "b"], "nothing of a refused request is applied")
        #expect(try registry.subscribe("u", to: ["a", "b", "c", "c"], isLive: false, graceUntil: grace) == ["c"])
        // Restoring what was accepted once ignores the limit (it may have been lowered since).
        #expect(try registry.subscribe("u", to: ["x", "y"], isLive: false, graceUntil: grace, enforcingLimit: false) == ["x", "y"])
    }

    @Test func connectedCountsFollowStreamsAndReportOnlyChanges() throws {
        var registry = SubscriptionRegistry(maximumTopicsPerUser: 10)
        _ = try registry.subscribe("u1", to: ["news", "sport"], isLive: false, graceUntil: grace)
        #expect(registry.takeChangedCounts().isEmpty, "no stream, nothing counted")
        registry.userWentLive("u1")
        #expect(registry.takeChangedCounts() == ["news": 1, "sport": 1])
        _ = try registry.subscribe("u2", to: ["news"], isLive: true, graceUntil: grace)
        #expect(registry.takeChangedCounts() == ["news": 2])
        #expect(registry.takeChangedCounts().isEmpty)
        registry.userWentDark("u1", graceUntil: grace)
        #expect(registry.takeChangedCounts() == ["news": 1, "sport": 0])
        #expect(registry.unsubscribe("u2", from: ["news"], isLive: true) == ["news"])
        #expect(registry.takeChangedCounts() == ["news": 0])
    }

    @Test func usersWithoutAStreamAreForgottenAfterTheirGrace() throws {
        var registry = SubscriptionRegistry(maximumTopicsPerUser: 10)
        let soon = NIODeadline.uptimeNanoseconds(10)
        let later = NIODeadline.uptimeNanoseconds(1_000)
        _ = try registry.subscribe("idle", to: ["a"], isLive: false, graceUntil: soon)
        _ = try registry.subscribe("live", to: ["a"], isLive: true, graceUntil: soon)
        _ = try registry.subscribe("back", to: ["b"], isLive: false, graceUntil: soon)
        registry.userWentLive("back")
        #expect(registry.forgetUsers(dueBy: .uptimeNanoseconds(500)) == ["idle"])
        #expect(registry.subscribers["a"] == ["live"])
        registry.userWentDark("back", graceUntil: later)
        #expect(registry.forgetUsers(dueBy: .uptimeNanoseconds(500)).isEmpty)
        #expect(registry.forgetUsers(dueBy: later) == ["back"])
        #expect(registry.users.keys.sorted() == ["live"])
    }
}
