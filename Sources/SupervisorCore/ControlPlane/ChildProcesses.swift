#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import NIOPosix
import Shared

/// The supervisor's child processes (its workers, and a worker binary a reload asks for its protocol versions),
/// whose exits arrive as events on the control plane's event loop: SIGCHLD's handler writes a byte to a pipe the
/// loop reads, and each read reaps, with non-blocking `waitpid`, every watched child that has exited. No thread
/// waits for a child, and nothing polls.
final class ChildProcesses {
    private let eventLoop: any EventLoop
    private let logger: Logger
    private var watched: [pid_t: (ExitStatus) -> Void] = [:]

    init(eventLoop: any EventLoop, logger: Logger) {
        self.eventLoop = eventLoop
        self.logger = logger
    }

    /// Installs the SIGCHLD handler and starts reading its pipe. Before the first child is spawned.
    func start() -> EventLoopFuture<Void> {
        eventLoop.preconditionInEventLoop()
        let pipe: (read: CInt, write: CInt)
        do {
            pipe = try Syscall.pipe()
            try Syscall.setNonBlocking(pipe.write, true)
            try Syscall.signalChildExits(to: pipe.write)
        } catch {
            return eventLoop.makeFailedFuture(error)
        }
        let this = NIOLoopBound(self, eventLoop: eventLoop)
        return NIOPipeBootstrap(group: eventLoop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ChildExitReader { this.value.reapExited() })
                }
            }
            .takingOwnershipOfDescriptor(input: pipe.read)
            .map { _ in }
    }

    /// Calls `onExit` on the loop once `pid` (a child of this process, spawned on the loop) has exited and is reaped.
    func watch(_ pid: pid_t, onExit: @escaping (ExitStatus) -> Void) {
        eventLoop.preconditionInEventLoop()
        watched[pid] = onExit
        // It may have exited already, its SIGCHLD's byte read before it was watched.
        reapIfExited(pid)
    }

    private func reapExited() {
        for pid in Array(watched.keys) { reapIfExited(pid) }
    }

    /// An exit handler may spawn and watch another child: each pid is looked up afresh, and reaped once.
    private func reapIfExited(_ pid: pid_t) {
        guard let onExit = watched[pid] else { return }
        let status: ExitStatus
        do {
            guard let raw = try Syscall.reapIfExited(pid) else { return }
            status = ExitStatus(waitStatus: raw)
        } catch {
            // ECHILD: someone else reaped it. It is gone all the same; how it ended is unknown, and said so.
            logger.error("cannot learn how a child process ended", metadata: ["pid": "\(pid)", "error": "\(error)"])
            status = .unknown(error)
        }
        watched[pid] = nil
        onExit(status)
    }
}

/// Reads SIGCHLD's bytes; each read (of however many signals) reaps once.
private final class ChildExitReader: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private let reap: () -> Void

    init(reap: @escaping () -> Void) { self.reap = reap }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) { reap() }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A pipe this process made and only its signal handler writes: failing means the process is broken.
        fatalError("the SIGCHLD pipe failed: \(error)")
    }
}
