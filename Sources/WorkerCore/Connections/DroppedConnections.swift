import Logging
import NIOCore

/// Connections this worker could not serve (no descriptor left, or their address over its limit), logged at most
/// once a second (they come by the thousand) with how many, and what to do about it. On the event loop.
final class DroppedConnections {
    private let eventLoop: any EventLoop
    private let logger: Logger
    private let message: Logger.Message
    private let event: String
    /// The metadata key of the count (`SSE_LOST`, `SSE_REFUSED` in the journal).
    private let countKey: String
    /// Fields every line carries (what ran out, for a query that does not read the message).
    private let details: Logger.Metadata
    private var unlogged = 0
    private var quietUntil = NIODeadline.uptimeNanoseconds(0)
    private var flushScheduled = false

    init(
        eventLoop: any EventLoop, logger: Logger, message: Logger.Message, event: String, countKey: String,
        details: Logger.Metadata = [:]
    ) {
        self.eventLoop = eventLoop
        self.logger = logger
        self.message = message
        self.event = event
        self.countKey = countKey
        self.details = details
    }

    func record() {
        unlogged += 1
        if NIODeadline.now() >= quietUntil {
            flush()
        } else if !flushScheduled {
            flushScheduled = true
            let this = NIOLoopBound(self, eventLoop: eventLoop)
            eventLoop.scheduleTask(deadline: quietUntil) {
                this.value.flushScheduled = false
                this.value.flush()
            }
        }
    }

    private func flush() {
        guard unlogged > 0 else { return }
        logger.error(message, metadata: details.merging([countKey: "\(unlogged)", "event": "\(event)"]) { $1 })
        unlogged = 0
        quietUntil = .now() + .seconds(1)
    }
}
