import Foundation
import Synchronization

/// Publishes `{"n": 0}`, `{"n": 1}`, ... one after another, through the given hosts in turn, until stopped, and
/// keeps which numbers were accepted (200) and which were attempted. A refused publish (503 while the log is away)
/// is not retried: its number is skipped, and it may still be delivered only if the log committed it unconfirmed.
final class SteadyPublisher: Sendable {
    struct Record {
        var accepted: [Int] = []
        var refused: [Int] = []
        var attempted = 0
        var stopped = false
    }

    let event: String
    private let hosts: [HubProcess]
    private let record = Mutex(Record())
    private let finished = Mutex<Task<Void, Never>?>(nil)

    init(event: String = "seq", through hosts: [HubProcess]) {
        self.event = event
        self.hosts = hosts
    }

    var accepted: [Int] { record.withLock { $0.accepted } }
    var refused: [Int] { record.withLock { $0.refused } }
    var attempted: Int { record.withLock { $0.attempted } }

    func start(interval: Duration = .milliseconds(20)) {
        let task = Task {
            var n = 0
            while !record.withLock({ $0.stopped }) {
                let host = hosts[n % hosts.count]
                let status = (try? await host.publishNumbered(event, n).status) ?? 0
                record.withLock { record in
                    record.attempted = n + 1
                    if status == 200 { record.accepted.append(n) } else { record.refused.append(n) }
                }
                n += 1
                try? await Task.sleep(for: interval)
            }
        }
        finished.withLock { $0 = task }
    }

    /// Stops, once the publish in flight has been answered.
    func stop() async {
        record.withLock { $0.stopped = true }
        await finished.withLock { $0 }?.value
    }

    /// Waits until at least `count` more publishes have been accepted.
    func waitForAccepted(_ count: Int, timeout: Duration = .seconds(30)) async throws {
        let target = accepted.count + count
        try await waitUntil("\(count) more publishes accepted", timeout: timeout) { self.accepted.count >= target }
    }

    /// What a client that saw `received` (in order) must have seen: every accepted number exactly once, in order,
    /// and nothing that was never attempted. Returns what is wrong, or nil.
    func problems(in received: [Int]) -> String? {
        if Set(received).count != received.count { return "duplicates: \(received)" }
        if received != received.sorted() { return "out of order: \(received)" }
        let missing = Set(accepted).subtracting(received)
        if !missing.isEmpty { return "lost accepted publishes \(missing.sorted())" }
        let unknown = received.filter { $0 < 0 || $0 >= attempted }
        if !unknown.isEmpty { return "never published: \(unknown)" }
        return nil
    }
}
