import Foundation
import Shared

/// A reconnect storm, from the order (`storm` to every load process) until every process reports all its streams
/// resumed or failed, with the server's CPU at both ends. The publishing goes on meanwhile, so the server's CPU rate
/// while publishing before the storm is kept too: what the report subtracts to show the resume's own cost.
final class StormWatch: Sendable {
    struct Outcome: Sendable {
        var orderedAt: UInt64
        var settledAt: UInt64?
        var serverCPUSeconds: Double?
        /// The server's CPU per second of publishing from the first publish to the storm.
        var steadyServerCPUPerSecond: Double?
    }

    private let task: Task<Outcome, Never>

    private init(task: Task<Outcome, Never>) { self.task = task }

    /// Orders the storm now. `steadySince`: when the publishing started, and the server's CPU then.
    static func start(fleet: LoadFleet, server: ServerProcesses?, steadySince: (at: UInt64, cpuSeconds: Double?)) -> StormWatch {
        let orderedAt = MonotonicClock.nanoseconds()
        let cpuAtOrder = server?.cpuSeconds()
        var outcome = Outcome(orderedAt: orderedAt)
        if let cpuAtOrder, let before = steadySince.cpuSeconds, orderedAt > steadySince.at {
            outcome.steadyServerCPUPerSecond = (cpuAtOrder - before) / (Double(orderedAt - steadySince.at) / 1e9)
        }
        fleet.command("storm")
        return StormWatch(
            task: Task { [outcome] in
                var outcome = outcome
                let deadline = ContinuousClock.now + .seconds(300)
                while ContinuousClock.now < deadline {
                    if fleet.latest.allSatisfy({ $0.storm?.settled == true && $0.storm?.cpuSeconds != nil }) {
                        outcome.settledAt = MonotonicClock.nanoseconds()
                        outcome.serverCPUSeconds = zip(cpuAtOrder, server?.cpuSeconds()).map { $1 - $0 }
                        break
                    }
                    try? await Task.sleep(for: .milliseconds(10))
                }
                return outcome
            })
    }

    func outcome() async -> Outcome { await task.value }
}
