import Foundation

/// A reconnect storm, from the order (`storm` to every load process) until every process reports all its streams
/// resumed or failed, with the server's CPU at both ends.
final class StormWatch: Sendable {
    struct Outcome: Sendable {
        var serverCPUSeconds: Double?
        /// The server's root process alone (sse-hub: the supervisor).
        var rootCPUSeconds: Double?
    }

    private let task: Task<Outcome, Never>

    private init(task: Task<Outcome, Never>) { self.task = task }

    /// Orders the storm now.
    static func start(fleet: LoadFleet, server: ServerProcesses?, root: Int32?) -> StormWatch {
        let cpuAtOrder = server?.cpuSeconds()
        let rootCPUAtOrder = root.map { ProcessCPU.seconds(pid: String($0)) }
        fleet.command("storm")
        return StormWatch(
            task: Task {
                var outcome = Outcome()
                let deadline = ContinuousClock.now + .seconds(300)
                while ContinuousClock.now < deadline {
                    if fleet.latest.allSatisfy({ $0.storm?.settled == true && $0.storm?.cpuSeconds != nil }) {
                        outcome.serverCPUSeconds = zip(cpuAtOrder, server?.cpuSeconds()).map { $1 - $0 }
                        outcome.rootCPUSeconds = zip(rootCPUAtOrder, root.map { ProcessCPU.seconds(pid: String($0)) }).map { $1 - $0 }
                        break
                    }
                    try? await Task.sleep(for: .milliseconds(10))
                }
                return outcome
            })
    }

    func outcome() async -> Outcome { await task.value }
}
