import Foundation
import Shared

/// What a supervisor hands to the program it re-executes in place (`InPlaceUpgrade`): every descriptor a client
/// depends on, with what the process knew of it, so that the new program carries on where the old one stopped.
///
/// Written as JSON to a memory file whose descriptor the new program finds in `SSE_HUB_UPGRADE_STATE_FD`; every
/// descriptor number in it is open, without close-on-exec, in the new program. `format` names the layout; a release
/// reads every format in `readableFormats` (the previous release's included: a fixture of it is kept in the tests)
/// and refuses others before anything changes (`sse-supervisor upgrade-check`). docs/operations.md describes it.
///
/// Format 1 (release 0.12.0), field by field:
/// - `release`: the release that wrote it; `upgrades`: how many times this process was upgraded in place before;
///   `startedAtMilliseconds`: when this process first started (ms since 1970).
/// - `epoch`: the first part of every event id (a client resumes across the upgrade with the same ids).
/// - `listeners`, `operatorSocket`: the listening sockets (HTTP, and `ctl`'s); `inherited`: the descriptors this
///   process's parent gave it, kept open as they were.
/// - `connections`: clients accepted whose request was not routed yet (nothing of them was read: the new program
///   reads their request afresh); `waitingHandoffs`: clients routed to a worker and waiting for it, with their
///   hand-off; `operatorReplies`: `ctl reload` connections waiting for the answer of the reload that upgrades;
///   `queuedReloads`: reloads asked for meanwhile, run next, in order.
/// - `history`: the events kept for `Last-Event-ID` replay, and its bounds; `topics`: every user's topics.
/// - `shards`: per shard, its restarts and worker generations so far, and its worker when it runs: pid, the
///   supervisor's ends of its control socket and hand-off link, the protocol versions it speaks, the bytes read from
///   its control socket and not decoded yet, the frames written to it and not sent yet, the last sequence sent to
///   it, its stats.
/// - `sharedLog`: with `--postgres-url`, where this host stands in the log.
public struct UpgradeState: Codable, Sendable, Equatable {
    /// The layout this release writes.
    public static let currentFormat = 1
    /// The layouts this release reads.
    public static let readableFormats: ClosedRange<Int> = 1...1
    /// Where the new program finds the state's descriptor.
    public static let environmentKey = "SSE_HUB_UPGRADE_STATE_FD"

    public var format: Int
    public var release: String
    public var upgrades: Int
    public var startedAtMilliseconds: Int64
    public var epoch: UInt64
    public var listeners: [CInt]
    public var operatorSocket: CInt?
    /// Descriptors this process was given by its parent (open without close-on-exec when it first started, beyond
    /// the standard three): they stay open across upgrades, as the parent meant (a supervisor of processes may watch
    /// one to learn when this process ends).
    public var inherited: [CInt]
    public var connections: [CInt]
    public var waitingHandoffs: [WaitingHandoff]
    public var operatorReplies: [CInt]
    public var queuedReloads: [QueuedReload]
    public var history: History
    public var topics: [UserTopicsRecord]
    public var shards: [Shard]
    public var sharedLog: SharedLogPosition?
    /// The metrics listener (`--metrics-listen`, or systemd's socket named `metrics`), if there is one; absent in a
    /// state written by a release before it.
    public var metricsListener: CInt? = nil

    /// A reload asked for while the upgrade ran: the new program runs it once the upgrade's reload is done.
    public struct QueuedReload: Codable, Sendable, Equatable {
        public var workersOnly: Bool
        /// Its `ctl reload` connection, if it came from one.
        public var operatorReply: CInt?
    }

    /// A connection routed to a worker and waiting for it, with its hand-off (a stream's head was read already).
    public struct WaitingHandoff: Codable, Sendable, Equatable {
        public var fd: CInt
        public var shard: Int
        public var payload: Data
    }

    public struct History: Codable, Sendable, Equatable {
        public var evictedThrough: UInt64
        public var latestSequence: UInt64
        public var events: [Event]
    }

    /// A `PublishCommand`, spelled out.
    public struct Event: Codable, Sendable, Equatable {
        public var sequence: UInt64
        public var publishedAt: Int64
        /// `everyone`, `topic` or `user`.
        public var target: String
        /// The topic or user id (none for `everyone`).
        public var recipient: String?
        public var event: String
        public var data: String
    }

    public struct UserTopicsRecord: Codable, Sendable, Equatable {
        public var user: String
        public var topics: [String]
    }

    public struct Shard: Codable, Sendable, Equatable {
        public var restarts: Int
        /// The last generation given to a worker of the shard.
        public var generation: Int
        /// Failures in a row before the running worker (or before the next start, when none runs).
        public var failures: Int
        public var worker: Worker?
    }

    public struct Worker: Codable, Sendable, Equatable {
        public var pid: Int32
        public var generation: Int
        public var control: CInt
        public var handoffSocket: CInt
        public var handoffDoorbell: CInt
        public var controlVersion: UInt8
        public var handoffVersion: UInt8
        /// Bytes read from the control socket and not decoded yet (at most the start of one frame).
        public var unread: Data
        /// Frames written to the control channel during the hand-over, not sent yet: the new program sends them first.
        public var unsent: Data
        public var sentThrough: UInt64
        public var uptimeMilliseconds: Int64
        public var clients: Int
        public var topicCounts: [String: Int]
    }

    public struct SharedLogPosition: Codable, Sendable, Equatable {
        public var eventCursor: UInt64
        public var changeCursor: UInt64
        /// No longer used (the database counts streams since schema version 2); still written, empty, so that a
        /// release before it can take over from this one and read the state.
        public var streamsOpenedHereUnlogged: [String: Int] = [:]
    }

    /// Every descriptor the new program keeps.
    public var descriptors: [CInt] {
        var all = listeners + inherited + connections + waitingHandoffs.map(\.fd) + operatorReplies + queuedReloads.compactMap(\.operatorReply)
        if let operatorSocket { all.append(operatorSocket) }
        if let metricsListener { all.append(metricsListener) }
        for worker in shards.compactMap(\.worker) { all += [worker.control, worker.handoffSocket, worker.handoffDoorbell] }
        return all
    }

    public func encoded() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return [UInt8](try encoder.encode(self))
    }

    /// Decodes a state, refusing a format this release does not read.
    public static func decode(_ bytes: [UInt8]) throws -> UpgradeState {
        struct Header: Decodable { var format: Int; var release: String? }
        let header: Header
        do {
            header = try JSONDecoder().decode(Header.self, from: Data(bytes))
        } catch {
            throw UpgradeStateUnreadable.notAState("\(error)")
        }
        guard readableFormats.contains(header.format) else {
            throw UpgradeStateUnreadable.format(header.format, writtenBy: header.release ?? "an unknown release")
        }
        do {
            return try JSONDecoder().decode(UpgradeState.self, from: Data(bytes))
        } catch {
            throw UpgradeStateUnreadable.notAState("\(error)")
        }
    }

    /// Why this release cannot take the state over, or nil when it can: the workers must speak a protocol it speaks.
    public var incompatibility: String? {
        for (shard, record) in shards.enumerated() {
            guard let worker = record.worker else { continue }
            if !ControlFrame.supportedVersions.contains(worker.controlVersion) {
                return "worker \(shard) speaks control protocol \(worker.controlVersion); this release speaks \(ControlFrame.oldestVersion) to \(ControlFrame.version)"
            }
            if worker.handoffVersion != Handoff.version {
                return "worker \(shard) speaks hand-off protocol \(worker.handoffVersion); this release speaks \(Handoff.version)"
            }
        }
        return nil
    }
}

public enum UpgradeStateUnreadable: Error, CustomStringConvertible {
    case notAState(String)
    case format(Int, writtenBy: String)

    public var description: String {
        switch self {
        case .notAState(let detail): "the upgrade state does not parse: \(detail)"
        case .format(let format, let release):
            "the upgrade state is of format \(format) (written by \(release)); this release reads formats \(UpgradeState.readableFormats.lowerBound) to \(UpgradeState.readableFormats.upperBound)"
        }
    }
}

extension UpgradeState.Event {
    init(_ command: PublishCommand) {
        sequence = command.sequence
        publishedAt = command.publishedAt
        switch command.target {
        case .everyone: (target, recipient) = ("everyone", nil)
        case .topic(let topic): (target, recipient) = ("topic", topic)
        case .user(let user): (target, recipient) = ("user", user)
        }
        event = command.event
        data = command.data
    }

    public var command: PublishCommand? {
        let target: PublishTarget
        switch (self.target, recipient) {
        case ("everyone", _): target = .everyone
        case ("topic", let topic?): target = .topic(topic)
        case ("user", let user?): target = .user(user)
        default: return nil
        }
        return PublishCommand(target: target, event: event, data: data, sequence: sequence, publishedAt: publishedAt)
    }
}
