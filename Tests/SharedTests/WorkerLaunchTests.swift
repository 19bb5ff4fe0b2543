import ArgumentParser
import Logging
import Shared
import Testing

@Suite("A worker's launch arguments, built by the supervisor and parsed by the worker, are the same values")
struct WorkerLaunchTests {
    @Test func roundTripsEveryValue() throws {
        var stream = StreamOptions()
        stream.heartbeat = 7
        stream.topicGrace = 11
        stream.corsOrigins = ["https://a.example", "*"]
        stream.historySize = 13
        stream.historyTtl = 17
        stream.historyBytes = 2 * 1024 * 1024
        stream.maxTopicsPerUser = 19
        stream.retryMs = 23
        stream.requestTimeout = 29
        stream.maxWorkerConnsPerIp = 31
        stream.maxPendingBytes = 8192
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
        #expect(Set([WorkerLaunch.Descriptor.control, WorkerLaunch.Descriptor.handoffSocket, WorkerLaunch.Descriptor.doorbell]).count == 3)
        #expect(WorkerLaunch.Descriptor.control > 2, "above stdin, stdout and stderr")
    }

    @Test func withoutAUserNoneIsPassed() throws {
        let arguments = WorkerLaunch.arguments(shard: 0, epoch: 1, stream: StreamOptions(), logLevel: .info, user: nil)
        #expect(!arguments.contains("--user"))
        #expect(try WorkerLaunch.parse(arguments).user == nil)
    }
}
