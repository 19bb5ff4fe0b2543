import NIOCore

/// Gives freed heap memory back to the kernel after a burst (a worker's connections coming and going, the
/// supervisor's publishes: bodies, frames, evicted history entries), which glibc would otherwise keep
/// (`Syscall.releaseFreeMemory`). Trims at most once an interval, and only after a change. On one event loop.
public final class HeapTrimmer {
    private var changedSinceTrim = false

    public init() {}

    public func noteChange() { changedSinceTrim = true }

    public func start(on eventLoop: any EventLoop, every interval: TimeAmount = .seconds(2)) {
        let this = NIOLoopBound(self, eventLoop: eventLoop)
        eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
            let trimmer = this.value
            guard trimmer.changedSinceTrim else { return }
            trimmer.changedSinceTrim = false
            Syscall.releaseFreeMemory()
        }
    }
}
