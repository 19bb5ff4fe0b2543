import ArgumentParser
import Logging
import Shared
import Testing

@Suite("A worker's launch arguments, built by the supervisor and parsed by the worker, are the same values")
struct WorkerLaunchTests {
    @Test func roundTripsEveryValue() throws {
        let stream = try StreamOptions.parse([
            "--heartbeat", "7", "--topic-grace", "11", "--cors-origin", "https://a.example", "--cors-origin", "*",
            "--history-size", "13", "--history-ttl", "17", "--history-bytes", "2097152", "--max-topics-per-user", "19",
            "--retry-ms", "23", "--request-timeout", "29", "--max-worker-conns-per-ip", "31", "--max-pending-bytes", "8192",
        ])
        let arguments = WorkerLaunch.arguments(shard: 5, epoch: 1_700_000_000_123, stream: stream, logLevel: .debug, user: "sse-hub")
        let launch = try WorkerLaunch.parse(arguments)
        #expect(launch.shard == 5)
        #expect(launch.epoch == 1_700_000_000_123)
        #expect(launch.logLevel == .debug)
        #expect(launch.user == "sse-hub")
        #expect(launch.controlFd == WorkerLaunch.Descriptor.control)
        #expect(launch.handoffFd == WorkerLaunch.Descriptor.handoffSocket)
        #expect(launch.doorbellFd == WorkerLaunch.Descriptor.doorbell)
        #expect(launch.stream.workerArguments == stream.workerArguments)
        #expect(launch.stream.heartbeat == 7 && launch.stream.corsOrigins == ["https://a.example", "*"] && launch.stream.maxPendingBytes == 8192)
        #expect(Set([WorkerLaunch.Descriptor.control, WorkerLaunch.Descriptor.handoffSocket, WorkerLaunch.Descriptor.doorbell]).count == 3)
        #expect(WorkerLaunch.Descriptor.control > 2, "above stdin, stdout and stderr")
    }

    @Test func withoutAUserNoneIsPassed() throws {
        let arguments = WorkerLaunch.arguments(shard: 0, epoch: 1, stream: try StreamOptions.parse([]), logLevel: .info, user: nil)
        #expect(!arguments.contains("--user"))
        #expect(try WorkerLaunch.parse(arguments).user == nil)
    }
}
