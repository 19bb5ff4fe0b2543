import NIOCore

/// Reports stats `delay` after a change, once for a burst of changes: a worker's streams come and go by the
/// thousand, and the supervisor needs the counts, not every step. On the event loop.
final class StatsReporter {
    private let eventLoop: any EventLoop
    private let delay: TimeAmount
    private let report: () -> Void
    private var scheduled = false

    init(eventLoop: any EventLoop, delay: TimeAmount, report: @escaping () -> Void) {
        self.eventLoop = eventLoop
        self.delay = delay
        self.report = report
    }

    /// Something counted changed: report within `delay`, unless a report is already due.
    func changed() {
        eventLoop.preconditionInEventLoop()
        guard !scheduled else { return }
        scheduled = true
        let this = NIOLoopBound(self, eventLoop: eventLoop)
        eventLoop.scheduleTask(in: delay) {
            this.value.scheduled = false
            this.value.report()
        }
    }
}
