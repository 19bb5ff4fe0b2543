import Synchronization

/// Runs `operation`, or throws `Deadline.Missed` once `duration` has passed. A missed operation is cancelled and
/// abandoned, not awaited: one that ignores cancellation (a query on a connection that died under it) must not hold
/// its caller, which a task group would, since a group waits for all its children.
enum Deadline {
    struct Missed: Error, CustomStringConvertible {
        var duration: Duration
        var description: String { "no answer within \(duration)" }
    }

    static func run<Value: Sendable>(within duration: Duration, _ operation: @escaping @Sendable () async throws -> Value) async throws -> Value {
        let answered = Mutex(false)
        let tasks = Mutex<(work: Task<Void, Never>?, timer: Task<Void, Never>?)>((nil, nil))
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Value, any Error>) in
                // Whichever finishes first answers; the other finds `answered` set and does nothing.
                let answer: @Sendable (Result<Value, any Error>) -> Void = { result in
                    guard answered.withLock({ done in defer { done = true }; return !done }) else { return }
                    let (work, timer) = tasks.withLock { $0 }
                    work?.cancel()
                    timer?.cancel()
                    continuation.resume(with: result)
                }
                tasks.withLock { tasks in
                    tasks.work = Task {
                        do { answer(.success(try await operation())) } catch { answer(.failure(error)) }
                    }
                    tasks.timer = Task {
                        guard (try? await Task.sleep(for: duration)) != nil else { return }
                        answer(.failure(Missed(duration: duration)))
                    }
                }
            }
        } onCancel: {
            tasks.withLock { $0.work }?.cancel()
        }
    }
}
