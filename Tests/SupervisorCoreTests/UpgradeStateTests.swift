import Foundation
import Shared
import SupervisorCore
import SystemPackage
import Testing

/// The state an in-place upgrade hands from one release to the next: what the previous release wrote must stay
/// readable (its fixture is kept as that release wrote it), and what cannot be taken over is refused with a reason
/// before anything changes (`sse-supervisor upgrade-check`).
@Suite struct UpgradeStateTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    /// Written by release 0.12.0's pre-flight (a supervisor with two workers, a stream, a user's topics, three events).
    static func formatOne() throws -> [UInt8] {
        [UInt8](try Data(contentsOf: fixtures.appendingPathComponent("upgrade-state-format-1.json")))
    }

    @Test func theStateThePreviousFormatWroteIsReadInFull() throws {
        let state = try UpgradeState.decode(try Self.formatOne())
        #expect(state.format == 1)
        #expect(state.release == "0.12.0")
        #expect(state.upgrades == 0)
        #expect(state.epoch == 1_796_291_288_764)
        #expect(state.listeners == [7] && state.operatorSocket == 6 && state.operatorReplies == [23] && state.inherited == [10, 251])
        #expect(state.history.latestSequence == 3 && state.history.evictedThrough == 0)
        let events = state.history.events.map(\.command)
        #expect(
            events == [
                PublishCommand(target: .everyone, event: "one", data: #"{"n":1}"#, sequence: 1, publishedAt: 1_796_291_291_386),
                PublishCommand(target: .topic("news"), event: "headline", data: #""Hi""#, sequence: 2, publishedAt: 1_796_291_291_397),
                PublishCommand(target: .user("alice"), event: "reward", data: "[1,2]", sequence: 3, publishedAt: 1_796_291_291_409),
            ])
        #expect(state.topics.map(\.user) == ["bob"] && state.topics.map(\.topics) == [["news", "scores"]])
        let workers = state.shards.compactMap(\.worker)
        #expect(workers.map(\.pid) == [25576, 25577])
        #expect(workers.map(\.controlVersion) == [4, 4] && workers.map(\.handoffVersion) == [3, 3])
        #expect(workers[0].clients == 1 && workers[0].sentThrough == 3)
        #expect(Set(state.descriptors) == [7, 6, 23, 10, 251, 20, 22, 25, 21, 24, 28])
        #expect(state.incompatibility == nil, "this release takes the previous one's workers over")
    }

    @Test func whatThisReleaseWritesItReadsBack() throws {
        let state = try UpgradeState.decode(try Self.formatOne())
        #expect(try UpgradeState.decode(try state.encoded()) == state)
    }

    @Test func aFormatThisReleaseDoesNotReadIsRefusedWithTheReason() throws {
        var json = try JSONSerialization.jsonObject(with: Data(try Self.formatOne())) as! [String: Any]
        json["format"] = 99
        json["release"] = "7.0.0"
        let bytes = [UInt8](try JSONSerialization.data(withJSONObject: json))
        #expect {
            try UpgradeState.decode(bytes)
        } throws: { error in
            "\(error)".contains("format 99 (written by 7.0.0)") && "\(error)".contains("reads formats 1 to 1")
        }
        #expect(throws: UpgradeStateUnreadable.self) { try UpgradeState.decode(Array("not json".utf8)) }
    }

    @Test func aWorkerOfAProtocolThisReleaseDoesNotSpeakMakesTheStateIncompatible() throws {
        var state = try UpgradeState.decode(try Self.formatOne())
        state.shards[1].worker?.controlVersion = 3
        #expect(state.incompatibility?.contains("worker 1 speaks control protocol 3") == true)
        state.shards[1].worker?.controlVersion = 4
        state.shards[0].worker?.handoffVersion = 2
        #expect(state.incompatibility?.contains("worker 0 speaks hand-off protocol 2") == true)
    }

    /// The pre-flight as the running supervisor runs it: the state in a file on standard input.
    @Test func thePreflightAnswersWithThisReleaseOrWhyNot() throws {
        let file = try Syscall.memoryFile(named: "upgrade-state-test")
        defer { Syscall.close(file) }
        try Syscall.writeAll(file, try Self.formatOne())
        let (text, accepted) = UpgradeCheck.answer(stateOn: file)
        #expect(accepted)
        #expect(text == #"{"format":1,"protocols":"\#(WireProtocol.versions)","release":"\#(Release.version)"}"#)

        let garbage = try Syscall.memoryFile(named: "upgrade-state-garbage")
        defer { Syscall.close(garbage) }
        try Syscall.writeAll(garbage, Array("{}".utf8))
        let refused = UpgradeCheck.answer(stateOn: garbage)
        #expect(!refused.accepted)
        #expect(refused.text.contains("does not parse"))
    }
}
