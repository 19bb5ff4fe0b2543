import Crypto
import Foundation

/// A `TokenVerifier` that remembers the tokens it verified lately, so a reconnect storm (every client back
/// within seconds, each with the token it streamed with) costs a digest and a lookup per connection instead of an
/// HMAC and a JSON decoding: the supervisor's CPU per resumed stream went from 24 to 17 µs (BENCHMARKS.md, issue 13).
/// A publisher, too, presents the same token publish after publish.
///
/// - The key is the SHA-256 of the token's exact bytes (its first 128 bits): a token that differs in any byte,
///   a tampered one included, is verified afresh.
/// - Only tokens that verify (signature and claims) are kept, so a flood of bad tokens neither fills it nor is
///   answered from it. What a token may be used as (a user's, a publisher's) is checked on every call, hit or miss.
/// - `exp` is enforced on every hit: an entry is used only while the token is unexpired, against its expiry
///   rounded down to the second (never later than the token's own). `nbf` was passed when it was verified and
///   stays passed.
/// - It never outlives its keys: it owns the verifier, and it is emptied whenever the verifier's key ring changes (a
///   JWKS re-read or re-fetched), so a token verified with a key since removed is verified again.
/// - Bounded: two generations of at most `capacity / 2` entries each; when the newer one fills, the older is
///   dropped whole (a hit in the older generation moves the entry to the newer). No per-entry bookkeeping.
///
/// Not `Sendable`: one thread owns it (the supervisor's accept thread for the users' tokens, the control plane's
/// loop for the publishers'), so a lookup takes no lock.
public final class CachingTokenVerifier {
    public let verifier: TokenVerifier
    public let capacity: Int
    private var newer: [Key: Entry] = [:]
    private var older: [Key: Entry] = [:]
    /// The key ring's generation the entries were verified under: when a key changes, they all go.
    private var generation: UInt64 = 0
    public private(set) var hits = 0
    public private(set) var misses = 0

    struct Key: Hashable {
        var high: UInt64
        var low: UInt64
    }

    /// An `Identity` in 32 bytes instead of 40: 48 bytes with its key, which at 65,536 entries is about 6 MiB.
    struct Entry {
        var userID: String?
        /// `exp` in seconds since 1970; `Int64.max` when the token has none.
        var expiresAt: Int64
        var isPublisher: Bool

        init(_ identity: Identity) {
            userID = identity.userID
            expiresAt = identity.expiresAt ?? .max
            isPublisher = identity.isPublisher
        }

        var identity: Identity {
            Identity(userID: userID, isPublisher: isPublisher, expiresAt: expiresAt == .max ? nil : expiresAt)
        }
    }

    /// `capacity` 0 turns the cache off (every token verified in full).
    public init(verifier: TokenVerifier, capacity: Int) {
        precondition(capacity >= 0, "a cache of negative capacity")
        self.verifier = verifier
        self.capacity = capacity
    }

    public var count: Int { newer.count + older.count }

    /// What `TokenVerifier.verifyUser` answers, from the cache when it holds the token and it is unexpired.
    public func verifyUser(_ token: String?) -> Result<Identity, AuthFailure> {
        guard capacity > 0, let token, !token.isEmpty else { return verifier.verifyUser(token) }
        return verified(token).flatMap(TokenVerifier.asUser)
    }

    /// What `TokenVerifier.verifyPublisher` answers, from the cache when it holds the token and it is unexpired.
    public func verifyPublisher(_ token: String?) -> Result<Identity, AuthFailure> {
        guard capacity > 0, let token, !token.isEmpty else { return verifier.verifyPublisher(token) }
        return verified(token).flatMap(TokenVerifier.asPublisher)
    }

    /// `TokenVerifier.verify`'s answer (the token's signature and claims), remembered when it is a success; what the
    /// token is then used as (a user's, a publisher's) is checked on every call, hit or miss.
    private func verified(_ token: String) -> Result<Identity, AuthFailure> {
        let current = verifier.keys.snapshot.generation
        if current != generation {
            newer = [:]
            older = [:]
            generation = current
        }
        let key = Self.key(token)
        if let entry = newer[key] ?? promote(key), Date().timeIntervalSince1970 < Double(entry.expiresAt) {
            hits += 1
            return .success(entry.identity)
        }
        misses += 1
        let result = verifier.verify(token)
        if case .success(let identity) = result { remember(Entry(identity), for: key) }
        return result
    }

    private func promote(_ key: Key) -> Entry? {
        guard let entry = older.removeValue(forKey: key) else { return nil }
        remember(entry, for: key)
        return entry
    }

    private func remember(_ entry: Entry, for key: Key) {
        if newer.count >= max(1, capacity / 2) {
            older = newer
            newer = [:]
        }
        newer[key] = entry
    }

    static func key(_ token: String) -> Key {
        var token = token
        let digest = token.withUTF8 { SHA256.hash(data: UnsafeRawBufferPointer($0)) }
        return digest.withUnsafeBytes { Key(high: $0.loadUnaligned(as: UInt64.self), low: $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self)) }
    }
}
