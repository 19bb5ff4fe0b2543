import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Logging
import Shared
import Synchronization
import SystemPackage
import Testing

@testable import SupervisorCore

/// The accept thread's side of the hand-off, through real links (`SOCK_SEQPACKET` socket pairs and doorbell pipes)
/// and a real `epoll`: connections wait for a worker on events, in order, and never longer than their deadline.
@Suite("Hand-off from the published table: waiting on events, in order, within a deadline", .serialized)
struct HandoffDispatcherTests {
    /// A dispatcher with its epoll, driven here the way `AcceptReactor` drives it.
    final class Fixture {
        let epoll: Epoll
        let tables: HandoffTablePublisher
        let dispatcher: HandoffDispatcher
        /// What `onUnavailable` was given.
        let box: Box

        final class Box { var refused: [(fd: CInt, userID: String)] = [] }

        init(shards: Int, wait: Duration = .seconds(5)) throws {
            epoll = try Epoll()
            tables = try HandoffTablePublisher(shardCount: shards)
            let box = Box()
            self.box = box
            dispatcher = HandoffDispatcher(
                epoll: epoll, tables: tables, connectionWait: wait, metrics: .unexported(shardCount: 4), logger: Logger(label: "test"),
                onUnavailable: { fd, handoff in box.refused.append((fd, handoff.userID)) })
        }

        /// Publishes a table and lets the dispatcher take it (as the reactor does on the table's ring). Workers read
        /// batches, as this release's do, unless `batchLimit` says otherwise.
        func publish(links: [HandoffLink?], batchLimit: Int = HandoffBatch.maximumCount) {
            tables.publish(HandoffTable(links: links, batchLimits: Array(repeating: batchLimit, count: links.count)))
            dispatcher.tableChanged()
        }

        /// Runs the dispatcher's epoll events until none is ready within `milliseconds`.
        func runEvents(milliseconds: CInt = 50) throws {
            while true {
                let ready = try epoll.wait(timeoutMilliseconds: milliseconds)
                if ready.isEmpty { return }
                for event in ready { _ = dispatcher.handle(token: event.token) }
            }
        }
    }

    /// A worker's ends of a link, read here as the worker's event loop would.
    final class Worker {
        let link: HandoffLink
        let ends: HandoffLink.WorkerEnds
        /// How many connections each message received carried.
        private(set) var messageSizes: [Int] = []
        /// Reads messages as a worker of a release before batches does (one descriptor each, or the message is refused).
        var readsBatches = true
        private var open = true

        init() throws {
            let made = try HandoffLink.make()
            link = made.ours
            ends = made.theirs
        }

        /// The worker exits.
        func close() {
            guard open else { return }
            open = false
            ends.close()
        }

        deinit { close() }

        /// The hand-offs queued for this worker, in order (non-blocking). Each descriptor must be the one its hand-off
        /// names: a job's pipe holds its user id (`job`), unless it stands in for several.
        func received() throws -> [Handoff] {
            var result: [Handoff] = []
            try Syscall.setNonBlocking(ends.socket, true)
            while let message = try next() {
                defer { message.descriptors.forEach(Syscall.close) }
                let payloads = try HandoffBatch.handoffs(in: message.payload)
                try #require(payloads.count == message.descriptors.count, "a descriptor for every hand-off")
                messageSizes.append(payloads.count)
                for (fd, payload) in zip(message.descriptors, payloads) {
                    let handoff = try Handoff(decoding: payload)
                    if let written = Self.contents(of: fd) { #expect(written == handoff.userID, "the descriptor sent with it") }
                    result.append(handoff)
                }
            }
            return result
        }

        /// What a job's pipe holds (nil for a stand-in that holds nothing).
        private static func contents(of fd: CInt) -> String? {
            guard (try? Syscall.setNonBlocking(fd, true)) != nil else { return nil }
            var bytes = [UInt8](repeating: 0, count: 256)
            let count = Glibc.read(fd, &bytes, bytes.count)
            return count > 0 ? String(decoding: bytes[..<count], as: UTF8.self) : nil
        }

        /// The next message, or nil when none is queued (or the supervisor's end is closed).
        private func next() throws -> DescriptorPassing.Received? {
            do {
                return try DescriptorPassing.receive(
                    from: ends.socket, waiting: false, maximumDescriptors: readsBatches ? HandoffBatch.maximumCount : 1)
            } catch .wouldBlock {
                return nil
            }
        }
    }

    /// A job carrying a fresh descriptor: a pipe's end stands in for a client's socket, and holds the user id, so
    /// the worker's side can tell that each hand-off came with its own descriptor.
    static func job(_ userID: String, shard: Int, route: HandoffRoute = .stream) throws -> HandoffDispatcher.Job {
        let pipe = try Syscall.pipe()
        #expect(Glibc.write(pipe.write, userID, userID.utf8.count) == userID.utf8.count)
        Syscall.close(pipe.write)
        let handoff = Handoff(route: route, userID: userID, tokenExpiry: nil)
        return HandoffDispatcher.Job(fd: pipe.read, payload: try handoff.encoded(), shard: shard, handoff: handoff, acceptedAt: .now)
    }

    /// Sends copies of `descriptor` until the link's queue is full; returns how many fit.
    static func fill(_ link: HandoffLink, with descriptor: CInt, payload: [UInt8]) throws -> Int {
        var count = 0
        while try sendUnlessFull(link, descriptor, payload) { count += 1 }
        return count
    }

    static func sendUnlessFull(_ link: HandoffLink, _ descriptor: CInt, _ payload: [UInt8]) throws -> Bool {
        do {
            try link.send(descriptor: descriptor, payload: payload)
            return true
        } catch .wouldBlock {
            return false
        }
    }

    @Test func aConnectionIsPassedWithItsTurnsFlush() throws {
        let fixture = try Fixture(shards: 2)
        let worker = try Worker()
        fixture.publish(links: [nil, worker.link])
        fixture.dispatcher.dispatch(try Self.job("ann", shard: 1))
        #expect(try worker.received().isEmpty, "queued until the accept loop's turn ends")
        fixture.dispatcher.flush()
        #expect(try worker.received().map(\.userID) == ["ann"])
        #expect(worker.messageSizes == [1], "alone, in the layout every release reads")
        #expect(fixture.dispatcher.nextDeadline == nil, "nothing waits")
    }

    @Test func aTurnsConnectionsGoToEachWorkerInOneMessageInOrder() throws {
        let fixture = try Fixture(shards: 2)
        let workers = [try Worker(), try Worker()]
        fixture.publish(links: workers.map(\.link))
        let users = (0..<8).map { "user-\($0)" }
        for (index, user) in users.enumerated() { fixture.dispatcher.dispatch(try Self.job(user, shard: index % 3 == 0 ? 0 : 1)) }
        fixture.dispatcher.flush()
        #expect(try workers[0].received().map(\.userID) == ["user-0", "user-3", "user-6"])
        #expect(try workers[1].received().map(\.userID) == ["user-1", "user-2", "user-4", "user-5", "user-7"])
        #expect(workers.map(\.messageSizes) == [[3], [5]], "one message to each worker")
    }

    @Test func aFullBatchGoesAtOnceAndTheRestWithTheFlush() throws {
        let fixture = try Fixture(shards: 1)
        let worker = try Worker()
        fixture.publish(links: [worker.link])
        let users = (0...HandoffBatch.maximumCount).map { "user-\($0)" }
        for user in users { fixture.dispatcher.dispatch(try Self.job(user, shard: 0)) }
        #expect(try worker.received().map(\.userID) == Array(users.dropLast()), "a full message is not held back")
        fixture.dispatcher.flush()
        #expect(try worker.received().map(\.userID) == [users.last!])
        #expect(worker.messageSizes == [HandoffBatch.maximumCount, 1])
    }

    /// After an in-place upgrade the previous release's workers still serve until a reload: they refuse a message
    /// with several descriptors (and lose its connections), so they must get one connection a message.
    @Test func aWorkerOfAReleaseBeforeBatchesGetsOneConnectionAMessage() throws {
        let fixture = try Fixture(shards: 1)
        let worker = try Worker()
        worker.readsBatches = false
        fixture.publish(links: [worker.link], batchLimit: 1)
        for user in ["a", "b", "c"] { fixture.dispatcher.dispatch(try Self.job(user, shard: 0)) }
        fixture.dispatcher.flush()
        #expect(try worker.received().map(\.userID) == ["a", "b", "c"])
        #expect(worker.messageSizes == [1, 1, 1])
    }

    @Test func connectionsWaitForAWorkerAndArePassedInOrderWhenTheTableListsIt() throws {
        let fixture = try Fixture(shards: 1)
        for user in ["a", "b", "c"] { fixture.dispatcher.dispatch(try Self.job(user, shard: 0)) }
        fixture.dispatcher.flush()
        #expect(fixture.dispatcher.nextDeadline != nil, "they wait")
        let worker = try Worker()
        fixture.publish(links: [worker.link])
        #expect(try worker.received().map(\.userID) == ["a", "b", "c"])
        fixture.dispatcher.dispatch(try Self.job("d", shard: 0))
        fixture.dispatcher.flush()
        #expect(try worker.received().map(\.userID) == ["d"])
        #expect(fixture.box.refused.isEmpty)
    }

    @Test func aConnectionNoWorkerTakesInTimeIsAnsweredUnavailable() throws {
        let fixture = try Fixture(shards: 1, wait: .milliseconds(20))
        fixture.dispatcher.dispatch(try Self.job("late", shard: 0))
        fixture.dispatcher.expire(now: .now)
        #expect(fixture.box.refused.isEmpty, "not before its deadline")
        fixture.dispatcher.expire(now: .now + .seconds(1))
        #expect(fixture.box.refused.map(\.userID) == ["late"])
        fixture.box.refused.forEach { Syscall.close($0.fd) }
        #expect(fixture.dispatcher.nextDeadline == nil)
        // A worker that comes later finds nothing left to take.
        let worker = try Worker()
        fixture.publish(links: [worker.link])
        #expect(try worker.received().isEmpty)
    }

    @Test func aFullWorkerQueueIsWaitedOnUntilTheWorkerReads() throws {
        let fixture = try Fixture(shards: 1)
        let worker = try Worker()
        fixture.publish(links: [worker.link])
        // Fill the worker's queue (the kernel's limit on queued messages) without the dispatcher.
        let filler = try Handoff(route: .stream, userID: "filler", tokenExpiry: nil).encoded()
        let stand = try Syscall.pipe()
        defer {
            Syscall.close(stand.read)
            Syscall.close(stand.write)
        }
        let filled = try Self.fill(worker.link, with: stand.read, payload: filler)
        #expect(filled > 0)
        fixture.dispatcher.dispatch(try Self.job("queued-1", shard: 0))
        fixture.dispatcher.dispatch(try Self.job("queued-2", shard: 0))
        fixture.dispatcher.flush()
        #expect(fixture.dispatcher.nextDeadline != nil, "they wait for room")
        // The worker reads: the socket turns writable, epoll says so, and the waiting ones go, in order.
        let first = try worker.received()
        try fixture.runEvents()
        let rest = try worker.received()
        let users = (first + rest).map(\.userID).filter { $0 != "filler" }
        #expect(users == ["queued-1", "queued-2"])
        #expect(fixture.dispatcher.nextDeadline == nil)
    }

    /// Synchronous, and the retiring worker's sends on a thread of their own: both block, which must not tie up the
    /// test runner's cooperative threads (other suites run meanwhile).
    @Test func streamsARetiringWorkerPassesBackGoToItsSuccessorInOrderUntilItExits() throws {
        let retiring = try Worker()
        let successor = try Worker()
        MigrationForwarder.start(from: retiring.link, to: successor.link, shard: 0, logger: Logger(label: "test"))
        // The retiring worker passes its streams back, more than the successor's queue holds before it reads.
        let users = (0..<600).map { "moving-\($0)" }
        let stand = try Syscall.pipe()
        defer {
            Syscall.close(stand.read)
            Syscall.close(stand.write)
        }
        let (socket, standIn) = (retiring.ends.socket, stand.read)
        let sent = Mutex<Result<Void, Errno>?>(nil)
        let senderDone = DispatchSemaphore(value: 0)
        let sender = Thread {
            defer { senderDone.signal() }
            let result = Result { () throws(Errno) in
                for user in users {
                    let migrated = Handoff(route: .migrated, userID: user, tokenExpiry: nil, resumeAfter: 41)
                    try DescriptorPassing.send(descriptor: standIn, payload: (try? migrated.encoded()) ?? [], over: socket)
                }
            }
            sent.withLock { $0 = result }
        }
        sender.start()
        var passed: [Handoff] = []
        let deadline = ContinuousClock.now + .seconds(60)
        while passed.count < users.count, ContinuousClock.now < deadline {
            let batch = try successor.received()
            if batch.isEmpty { _ = try Syscall.waitUntil(successor.ends.socket, is: .readable, timeoutMilliseconds: 100) }
            passed += batch
        }
        #expect(passed.map(\.userID) == users, "every stream reaches the successor, in order")
        #expect(passed.allSatisfy { $0.route == .migrated && $0.resumeAfter == 41 }, "with its resume point")
        #expect(senderDone.wait(timeout: .now() + 10) == .success)
        #expect(sent.withLock { $0.map { (try? $0.get()) != nil } } == true, "the retiring worker sent every stream")
        retiring.close()  // it exits: the forwarder ends
    }
}
