import Foundation
import Shared
import Testing

/// The accept thread's cache of verified tokens: it may only ever answer what the verifier itself would.
@Suite struct CachingTokenVerifierTests {
    let tokens = TokenVerifierTests()

    func cache(capacity: Int = 16) -> CachingTokenVerifier {
        CachingTokenVerifier(verifier: tokens.verifier(), capacity: capacity)
    }

    @Test func aTokenPresentedAgainIsAnsweredFromTheCacheWithTheSameIdentity() async throws {
        let cache = cache()
        let token = try await tokens.sign(["sub": .string("alice"), "exp": tokens.hourFromNow])
        let first = try cache.verifyUser(token).get()
        let second = try cache.verifyUser(token).get()
        #expect(first == second)
        #expect(first.userID == "alice")
        #expect(cache.hits == 1)
        #expect(cache.misses == 1)
    }

    @Test func anExpiredTokenIsRefusedEvenThoughItWasCached() async throws {
        let cache = cache()
        let expiry = Int64(Date().timeIntervalSince1970) + 2
        let token = try await tokens.sign(["sub": .string("bob"), "exp": .integer(expiry)])
        #expect(try cache.verifyUser(token).get().userID == "bob")
        // The real clock passes the token's exp (a wait on the condition, with a deadline).
        let deadline = Date().addingTimeInterval(10)
        while Date().timeIntervalSince1970 <= Double(expiry), Date() < deadline { try await Task.sleep(for: .milliseconds(50)) }
        #expect(cache.verifyUser(token) == .failure(AuthFailure(code: .invalidToken)))
        #expect(cache.hits == 0)
    }

    @Test func aChangeOfKeysEmptiesTheCache() async throws {
        // A JWKS source's keys: the secret's key, published under a kid, as a rotation would replace it.
        let ring = KeyRing(fixed: [])
        ring.replace(source: "jwks", with: [VerificationKey(secret: TokenVerifierTests.secret)])
        let cache = CachingTokenVerifier(verifier: TokenVerifier(keys: ring), capacity: 16)
        let token = try await tokens.sign(["sub": .string("dave"), "exp": tokens.hourFromNow])
        #expect(try cache.verifyUser(token).get().userID == "dave")
        #expect(cache.count == 1)
        ring.replace(source: "jwks", with: [])
        #expect(cache.verifyUser(token) == .failure(AuthFailure(code: .invalidToken)))
        #expect(cache.count == 0)
        #expect(cache.hits == 0)
    }

    @Test func aTokenWithOneByteChangedIsVerifiedAfreshAndRefused() async throws {
        let cache = cache()
        let token = try await tokens.sign(["sub": .string("carol"), "exp": tokens.hourFromNow])
        _ = try cache.verifyUser(token).get()
        // The payload of another user, with the cached token's header and signature.
        let other = try await tokens.sign(["sub": .string("mallory"), "exp": tokens.hourFromNow])
        let parts = token.split(separator: ".")
        let forged = [parts[0], other.split(separator: ".")[1], parts[2]].joined(separator: ".")
        #expect(cache.verifyUser(forged) == .failure(AuthFailure(code: .invalidToken)))
        var flipped = Array(token.utf8)
        flipped[flipped.count - 5] = flipped[flipped.count - 5] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        #expect(cache.verifyUser(String(decoding: flipped, as: UTF8.self)) == .failure(AuthFailure(code: .invalidToken)))
        #expect(cache.hits == 0)
    }

    @Test func refusedTokensAreNeverKept() async throws {
        let cache = cache()
        let wrongKey = try await tokens.sign(["sub": .string("dave"), "exp": tokens.hourFromNow], secret: "another-secret-another-secret-0123")
        for _ in 0..<3 { #expect(cache.verifyUser(wrongKey) == .failure(AuthFailure(code: .invalidToken))) }
        #expect(cache.verifyUser(nil) == .failure(AuthFailure(code: .missingToken)))
        #expect(cache.count == 0)
        #expect(cache.hits == 0)
    }

    @Test func theCacheHoldsAtMostItsCapacity() async throws {
        let cache = cache(capacity: 4)
        var signed: [String] = []
        for user in 0..<10 { signed.append(try await tokens.sign(["sub": .string("user-\(user)"), "exp": tokens.hourFromNow])) }
        for token in signed { #expect((try? cache.verifyUser(token).get()) != nil) }
        #expect(cache.count <= 4)
        // The latest ones are still there; the first is gone and verified again (correctly).
        _ = cache.verifyUser(signed[9])
        #expect(cache.hits == 1)
        #expect(try cache.verifyUser(signed[0]).get().userID == "user-0")
        #expect(cache.hits == 1)
    }

    /// One cache for both uses: a hit answers what the verifier would for the use asked, never the one it was cached
    /// under (a user's token is no publisher's; a publisher's token without a user is no user's).
    @Test func aCachedTokenIsCheckedForTheUseAskedEveryTime() async throws {
        let cache = cache()
        let user = try await tokens.sign(["sub": .string("frank"), "exp": tokens.hourFromNow])
        let publisher = try await tokens.sign(["role": .string("publisher"), "exp": tokens.hourFromNow])
        #expect(try cache.verifyUser(user).get().userID == "frank")
        #expect(cache.verifyPublisher(user) == .failure(AuthFailure(code: .notPublisher)))
        #expect(try cache.verifyPublisher(publisher).get().isPublisher)
        #expect(try cache.verifyPublisher(publisher).get().userID == nil)
        #expect(cache.verifyUser(publisher) == .failure(AuthFailure(code: .noUser)))
        #expect(cache.hits == 3)
        #expect(cache.misses == 2)
        for token in [user, publisher] {
            #expect(cache.verifyUser(token) == tokens.verifier().verifyUser(token))
            #expect(cache.verifyPublisher(token) == tokens.verifier().verifyPublisher(token))
        }
    }

    @Test func capacityZeroTurnsTheCacheOff() async throws {
        let cache = cache(capacity: 0)
        let token = try await tokens.sign(["sub": .string("erin"), "exp": tokens.hourFromNow])
        for _ in 0..<3 { #expect(try cache.verifyUser(token).get().userID == "erin") }
        #expect(cache.count == 0)
        #expect(cache.hits == 0)
    }
}
