import Dispatch
import SystemPackage
import Shared
import Synchronization

/// The accept thread's part in an in-place upgrade: the control plane asks it to stop (`pause`); at its next wake-up
/// it stops touching every descriptor it holds and reports them (`Held`), then waits until it is resumed (the
/// upgrade failed) or the process is replaced by `execve` (it never wakes again). Connections arriving meanwhile wait
/// in the listening sockets' backlog, which the new program inherits.
final class AcceptHandOver: Sendable {
    /// The connections the accept thread holds: those whose request head has not arrived or been routed (nothing
    /// of them was read), and those routed to a worker and waiting for it (their hand-off made: a stream's head was
    /// read already).
    struct Held: Sendable, Equatable {
        var unrouted: [CInt] = []
        var waiting: [Waiting] = []
    }

    struct Waiting: Sendable, Equatable {
        var fd: CInt
        var shard: Int
        var payload: [UInt8]
    }

    private enum State {
        case running
        case pauseAsked(@Sendable (Held) -> Void)
        case paused
    }

    private let state = Mutex(State.running)
    private let resumed = DispatchSemaphore(value: 0)
    /// The accept thread's wake-up (shared with shutdown: it tells them apart by `isPauseAsked`).
    let wake: EventCounter

    init() throws(Errno) {
        wake = try EventCounter()
    }

    /// Asks the accept thread to stop; `paused` runs on that thread with what it holds, once it has stopped.
    func pause(_ paused: @escaping @Sendable (Held) -> Void) {
        state.withLock { $0 = .pauseAsked(paused) }
        wake.signal()
    }

    /// Lets a paused accept thread go on as before.
    func resume() {
        let wasPaused = state.withLock { state -> Bool in
            guard case .paused = state else { return false }
            state = .running
            return true
        }
        if wasPaused { resumed.signal() }
    }

    /// On the accept thread, at a wake-up: true when a pause was asked (it has been served and resumed), false when
    /// the wake-up means shutdown.
    func servePause(holding held: () -> Held) -> Bool {
        let asked = state.withLock { state -> (@Sendable (Held) -> Void)? in
            guard case .pauseAsked(let paused) = state else { return nil }
            state = .paused
            return paused
        }
        guard let asked else { return false }
        wake.clear()
        asked(held())
        resumed.wait()
        return true
    }
}
