import Logging
import NIOCore
import Shared

/// Passes a retiring worker's live streams on to the worker replacing it (reload).
enum StreamMigration {
    /// For each stream, once its unsent frames have left, a duplicate of its descriptor goes to `send` with the
    /// user, the token expiry and `lastWritten` (the last event sequence written: the new worker continues after it),
    /// and this worker's copy is closed without ending the HTTP body (`StreamSocket.close`), so the connection lives on. A stream whose
    /// frames are still stuck after `patience` is closed (its client reconnects and resumes); a stream that could not be
    /// passed on goes to `lost`. Then `done` runs.
    /// Topics need no passing on: the supervisor keeps every user's and gave them to the new worker when it started.
    static func passOn(
        _ streams: LiveStreams, lastWritten: UInt64, eventLoop: any EventLoop, logger: Logger,
        patience: TimeAmount, send: @escaping (CInt, Handoff) -> Bool, lost: @escaping (String, LiveStreams.Stream) -> Void,
        done: @escaping () -> Void
    ) {
        eventLoop.preconditionInEventLoop()
        var remaining = streams.count
        guard remaining > 0 else { return done() }
        var passing: [StreamSocket] = []
        passing.reserveCapacity(remaining)
        // Each user's oldest first (as their writes complete: at once for idle streams), so the new worker makes them
        // live in that order and replaces the same one next.
        streams.forEachStream { userID, stream in
            let socket = stream.socket
            passing.append(socket)
            let handoff = Handoff(
                route: .migrated, userID: userID, tokenExpiry: stream.expiresAt, resumeAfter: lastWritten, openedAt: stream.openedAt)
            socket.whenSent { sent in
                var passed = false
                if sent { passed = passOn(socket.descriptor, handoff, logger: logger, send: send) }
                if !passed { lost(userID, stream) }
                socket.close()
                remaining -= 1
                if remaining == 0 { done() }
            }
        }
        eventLoop.assumeIsolated().scheduleTask(in: patience) { [passing] in
            for socket in passing where socket.state != .closed { socket.close() }
        }
    }

    /// Sends a duplicate of `descriptor` (the original is closed with its socket); returns whether it went.
    private static func passOn(_ descriptor: CInt, _ handoff: Handoff, logger: Logger, send: (CInt, Handoff) -> Bool) -> Bool {
        let copy: CInt
        do {
            copy = try Syscall.duplicate(descriptor)
        } catch {
            logger.warning("a stream's descriptor could not be duplicated; it reconnects", metadata: ["user": "\(handoff.userID)", "error": "\(error)"])
            return false
        }
        let passed = send(copy, handoff)
        Syscall.close(copy)
        if !passed { logger.warning("a stream could not be passed on; it reconnects", metadata: ["user": "\(handoff.userID)"]) }
        return passed
    }
}
