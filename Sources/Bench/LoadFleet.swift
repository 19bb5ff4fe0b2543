import Foundation
import Synchronization

/// The load processes: each an `sse-bench load` child holding its share of the streams (one process stays
/// under the 20000 open-files limit), talking JSON lines on stdout and taking commands on stdin.
final class LoadFleet: Sendable {
    private let children: [Child]

    final class Child: Sendable {
        let process: Process
        let input: FileHandle
        let state = Mutex(ChildState())

        init(process: Process, input: FileHandle) {
            self.process = process
            self.input = input
        }
    }

    struct ChildState {
        var buffer = Data()
        var latest = LoadProgress(attempted: 0, established: 0, failed: 0, closed: 0, received: 0, done: false)
        var result: LoadResult?
    }

    private init(children: [Child]) { self.children = children }

    static func start(plans: [LoadPlan]) throws -> LoadFleet {
        let executable = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        let children = try plans.map { plan -> Child in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = ["load", "--plan", String(decoding: try JSONEncoder().encode(plan), as: UTF8.self)]
            let input = Pipe()
            let output = Pipe()
            process.standardInput = input
            process.standardOutput = output
            let child = Child(process: process, input: input.fileHandleForWriting)
            output.fileHandleForReading.readabilityHandler = { handle in
                let data = handle.availableData
                guard !data.isEmpty else { return }
                child.state.withLock { state in
                    state.buffer.append(data)
                    while let newline = state.buffer.firstIndex(of: UInt8(ascii: "\n")) {
                        let line = state.buffer[state.buffer.startIndex..<newline]
                        state.buffer.removeSubrange(state.buffer.startIndex...newline)
                        switch try? JSONDecoder().decode(LoadMessage.self, from: line) {
                        case .progress(let progress): state.latest = progress
                        case .result(let result):
                            state.result = result
                            state.latest = result.progress
                        case nil: break
                        }
                    }
                }
            }
            try process.run()
            return child
        }
        return LoadFleet(children: children)
    }

    var latest: [LoadProgress] { children.map { $0.state.withLock { $0.latest } } }

    /// Waits until `condition` holds over every child's latest progress, printing `progress` every second. It gives up
    /// after `timeout`, or once `advance` (a count that grows while the work moves on) has stood still for `stalled`.
    func waitUntil(
        timeout: Duration, stalled: Duration? = nil, advance: ([LoadProgress]) -> Int = { _ in 0 },
        _ condition: ([LoadProgress]) -> Bool, progress: ([LoadProgress]) -> String
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        var lastPrinted = ContinuousClock.now
        var lastAdvance = (count: advance(latest), at: ContinuousClock.now)
        while !condition(latest) {
            guard ContinuousClock.now < deadline else { throw BenchError(description: "timed out: \(progress(latest))") }
            if let stalled {
                let count = advance(latest)
                if count != lastAdvance.count { lastAdvance = (count, .now) }
                guard lastAdvance.at.duration(to: .now) < stalled else {
                    throw BenchError(description: "no progress for \(stalled): \(progress(latest))")
                }
            }
            if children.contains(where: { !$0.process.isRunning }) {
                throw BenchError(description: "a load process exited early")
            }
            if lastPrinted.duration(to: .now) > .seconds(1) {
                FileHandle.standardError.write(Data((progress(latest) + "\n").utf8))
                lastPrinted = .now
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Sends a command line (`report`, `storm`) to every load process.
    func command(_ line: String) {
        for child in children { child.input.write(Data((line + "\n").utf8)) }
    }

    func collectResults() async throws -> [LoadResult] {
        command("report")
        let deadline = ContinuousClock.now + .seconds(30)
        while children.contains(where: { $0.state.withLock { $0.result == nil } }) {
            guard ContinuousClock.now < deadline else { throw BenchError(description: "a load process did not report") }
            try await Task.sleep(for: .milliseconds(20))
        }
        return children.compactMap { $0.state.withLock { $0.result } }
    }

    /// Closing stdin ends a child; one that lingers is killed.
    func stop() {
        for child in children { try? child.input.close() }
        let deadline = Date().addingTimeInterval(10)
        for child in children {
            while child.process.isRunning, Date() < deadline { usleep(10_000) }
            if child.process.isRunning { child.process.terminate() }
        }
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
}
