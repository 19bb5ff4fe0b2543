import Foundation
import Logging
import Shared
import SystemPackage

/// Passes the live streams a retiring worker sends back over its hand-off link to the worker replacing it, for the
/// length of one shard's migration, on a thread of its own: it blocks reading the retiring worker's link (a stream
/// arrives once the worker has written out what it had queued for it), sends each stream on the successor's link,
/// and when the successor's queue is full waits for room with `poll` (at most `patience`, then the stream is closed
/// and its client resumes elsewhere). It ends when the retiring worker closes its end, that is when it exits.
///
/// Why not on the accept thread: streams come back one at a time, and an event loop that takes each as it comes pays a
/// wake-up and an empty read per stream; a thread blocked in `recvmsg` pays neither (measured: 2× the supervisor's
/// CPU per migrated stream on the accept thread, in the `reload-20k-10/s` benchmark). The successor's link is shared
/// with the accept thread for the while: a `SOCK_SEQPACKET` message is sent whole or not at all, whichever thread sends.
enum MigrationForwarder {
    static func start(from retiring: HandoffLink, to successor: HandoffLink, shard: Int, patience: Duration = .seconds(5), logger: Logger) {
        let thread = Thread {
            Syscall.nameThisThread("sse-migrate-\(shard)")
            forward(from: retiring, to: successor, shard: shard, patience: patience, logger: logger)
        }
        thread.start()
    }

    private static func forward(from retiring: HandoffLink, to successor: HandoffLink, shard: Int, patience: Duration, logger: Logger) {
        var log = logger
        log[metadataKey: "worker"] = "\(shard)"
        do {
            // This thread is now the only reader of the retiring link: it may block.
            try Syscall.setNonBlocking(retiring.socket, false)
        } catch {
            log.error("cannot read a retiring worker's streams; they end, and their clients resume", metadata: ["error": "\(error)"])
            return
        }
        let buffers = DescriptorPassing.ReceiveBuffers()
        var (moved, lost) = (0, 0)
        /// The successor had no room for a whole `patience`: it is stuck (stopped, hung), and the streams still to
        /// come are not made to wait for it again, each `patience` long; they go as soon as it has room, or end.
        var stalled = false
        while true {
            let received: DescriptorPassing.Received?
            do {
                received = try DescriptorPassing.receive(from: retiring.socket, using: buffers)
            } catch {
                log.error("bad message from a retiring worker; dropped", metadata: ["error": "\(error)"])
                continue
            }
            guard let received else { break }  // the retiring worker has exited
            guard let fd = received.descriptor else { continue }
            defer { Syscall.close(fd) }
            do {
                let handoff = try Handoff(decoding: received.payload)
                guard handoff.route == .migrated else {
                    log.error("a retiring worker sent something other than a stream; closed")
                    continue
                }
                if try send(fd, received.payload, on: successor, within: stalled ? .zero : patience) {
                    moved += 1
                    stalled = false
                } else {
                    stalled = true
                    lost += 1
                    log.warning(
                        "a migrating stream found no room at the new worker in time; its client reconnects",
                        metadata: ["user": "\(handoff.userID)", "event": "migration-lost-stream"])
                }
            } catch {
                lost += 1
                log.warning(
                    "a migrating stream could not be passed on; its client reconnects",
                    metadata: ["error": "\(error)", "event": "migration-lost-stream"])
            }
        }
        log.info("streams moved to the new worker", metadata: ["event": "connection-migrated", "streams": "\(moved)", "lost": "\(lost)"])
    }

    /// Sends, waiting for room while the successor's queue is full; false if there was none within `patience`.
    private static func send(_ fd: CInt, _ payload: [UInt8], on link: HandoffLink, within patience: Duration) throws -> Bool {
        let deadline = ContinuousClock.now + patience
        while true {
            do {
                try link.send(descriptor: fd, payload: payload)
                return true
            } catch .wouldBlock {
                guard ContinuousClock.now < deadline else { return false }
                _ = try Syscall.waitUntil(link.socket, is: .writable, timeoutMilliseconds: deadline.pollTimeoutMilliseconds)
            }
        }
    }
}
