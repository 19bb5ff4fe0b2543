import Synchronization

/// Every key tokens are verified with, from every source: the HS256 secret and PEM files (fixed at start) and each
/// JWKS source (replaced whole when it is re-read or re-fetched). The accept thread reads a snapshot per token under
/// an uncontended lock; a refresher replaces one source's keys at a time, and the last good set of a source stays
/// until a good one replaces it.
public final class KeyRing: Sendable {
    /// The keys at one moment. `generation` changes whenever any key does, so what was verified with an older
    /// generation (the token cache) can be dropped.
    public struct Snapshot: Sendable {
        public var generation: UInt64
        public var keys: [VerificationKey]

        /// Whether any key was published under `kid`.
        public func knows(keyID: String) -> Bool { keys.contains { $0.keyID == keyID } }
    }

    private struct State {
        var fixed: [VerificationKey]
        var bySource: [String: [VerificationKey]] = [:]
        var snapshot: Snapshot
    }

    private let state: Mutex<State>
    private let unknownKeyIDs: Mutex<(@Sendable (String) -> Void)?> = Mutex(nil)

    public init(fixed: [VerificationKey]) {
        state = Mutex(State(fixed: fixed, snapshot: Snapshot(generation: 0, keys: fixed)))
    }

    public var snapshot: Snapshot { state.withLock { $0.snapshot } }

    /// Replaces the keys of one JWKS source (its path or URL).
    public func replace(source: String, with keys: [VerificationKey]) {
        state.withLock { state in
            state.bySource[source] = keys
            // Sources in a stable order, so two rings fed alike try keys alike.
            let all = state.fixed + state.bySource.keys.sorted().flatMap { state.bySource[$0]! }
            state.snapshot = Snapshot(generation: state.snapshot.generation + 1, keys: all)
        }
    }

    /// Who hears of a token whose `kid` no key has (a JWKS URL's refresher, which decides whether to fetch).
    public func onUnknownKeyID(_ handler: @escaping @Sendable (String) -> Void) {
        unknownKeyIDs.withLock { $0 = handler }
    }

    func noteUnknownKeyID(_ keyID: String) {
        unknownKeyIDs.withLock { $0 }?(keyID)
    }
}
