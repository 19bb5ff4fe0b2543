import NIOCore
import Shared

/// Gives freed heap memory back to the kernel after connections came and went: a burst of set-ups leaves a lot
/// behind, which glibc would otherwise keep (`Syscall.releaseFreeMemory`). Trims at most once an interval, and
/// only after a change. On the event loop.
final class HeapTrimmer {
    private var changedSinceTrim = false

    func noteChange() { changedSinceTrim = true }

    func start(on eventLoop: any EventLoop, every interval: TimeAmount = .seconds(2)) {
        let this = NIOLoopBound(self, eventLoop: eventLoop)
        eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
            let trimmer = this.value
            guard trimmer.changedSinceTrim else { return }
            trimmer.changedSinceTrim = false
            Syscall.releaseFreeMemory()
        }
    }
}
