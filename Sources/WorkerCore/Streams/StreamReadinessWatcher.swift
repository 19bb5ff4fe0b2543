import Foundation
import Logging
import NIOCore
import Shared
import SystemPackage

/// A thread that waits on the streams' epoll and hands each readiness to the event loop (`processReadiness`), then
/// waits for the loop to have handled it: the epoll stays readable until the loop reads it, so this thread would
/// otherwise spin. It never reads the epoll or touches a socket itself; the event loop stays their one owner.
///
/// Why a thread: SwiftNIO watches only descriptors it reads through a channel, and an epoll's descriptor cannot be
/// read. A stream's readiness is rare (its client leaving, or a full socket taking bytes again), so one wake-up of
/// this thread serves every stream that became ready meanwhile.
final class StreamReadinessWatcher: Sendable {
    private let stopSignal: EventCounter

    private init(stopSignal: EventCounter) {
        self.stopSignal = stopSignal
    }

    /// Starts watching `sockets`'s epoll for `eventLoop` (the loop `sockets` lives on).
    static func start(_ sockets: NIOLoopBound<StreamSockets>, epoll: CInt, eventLoop: any EventLoop, logger: Logger) throws(Errno) -> StreamReadinessWatcher {
        let watcher = StreamReadinessWatcher(stopSignal: try EventCounter())
        let stop = watcher.stopSignal
        let thread = Thread {
            Syscall.nameThisThread("sse-streams")
            while true {
                let ready: (first: Bool, second: Bool)
                do {
                    ready = try Syscall.waitUntilReadable(epoll, or: stop.descriptor)
                } catch {
                    logger.critical("cannot wait for the streams' readiness", metadata: ["error": "\(error)"])
                    return
                }
                if ready.second { return }
                do {
                    try eventLoop.submit { sockets.value.processReadiness() }.wait()
                } catch {
                    return  // the event loop has shut down: the worker is stopping
                }
            }
        }
        thread.start()
        return watcher
    }

    /// Ends the thread (at its next wake-up at the latest; at once when it waits on the epoll).
    func stop() {
        stopSignal.signal()
    }
}
