import Foundation
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

        /// Publishes a table and lets the dispatcher take it (as the reactor does on the table's ring).
        func publish(links: [HandoffLink?]) {
            tables.publish(HandoffTable(links: links))
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

        /// The hand-offs queued for this worker, in order (non-blocking).
        func received() throws -> [Handoff] {
            var result: [Handoff] = []
            try Syscall.setNonBlocking(ends.socket, true)
            while let message = try next() {
                if let fd = message.descriptor { Syscall.close(fd) }
                result.append(try Handoff(decoding: message.payload))
            }
            return result
        }

        /// The next message, or nil when none is queued (or the supervisor's end is closed).
        private func next() throws -> DescriptorPassing.Received? {
            do {
                return try DescriptorPassing.receive(from: ends.socket, waiting: false)
            } catch .wouldBlock {
                return nil
            }
        }
    }

    /// A job carrying a fresh descriptor (a pipe's end stands in for a client's socket).
    static func job(_ userID: String, shard: Int, route: HandoffRoute = .stream) throws -> HandoffDispatcher.Job {
        let pipe = try Syscall.pipe()
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

    @Test func aConnectionIsPassedAtOnceWhenItsWorkerIsUp() throws {
        let fixture = try Fixture(shards: 2)
        let worker = try Worker()
        fixture.publish(links: [nil, worker.link])
        fixture.dispatcher.dispatch(try Self.job("ann", shard: 1))
        #expect(try worker.received().map(\.userID) == ["ann"])
        #expect(fixture.dispatcher.nextDeadline == nil, "nothing waits")
    }

    @Test func connectionsWaitForAWorkerAndArePassedInOrderWhenTheTableListsIt() throws {
        let fixture = try Fixture(shards: 1)
        for user in ["a", "b", "c"] { fixture.dispatcher.dispatch(try Self.job(user, shard: 0)) }
        #expect(fixture.dispatcher.nextDeadline != nil, "they wait")
        let worker = try Worker()
        fixture.publish(links: [worker.link])
        #expect(try worker.received().map(\.userID) == ["a", "b", "c"])
        fixture.dispatcher.dispatch(try Self.job("d", shard: 0))
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
