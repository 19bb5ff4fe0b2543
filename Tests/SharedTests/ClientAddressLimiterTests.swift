import Glibc
@testable import Shared
import Testing

@Suite("Limits per client address: keys, token buckets, held connections, a bounded table")
struct ClientAddressLimiterTests {
    static let alice = ClientAddressKey.ipv4(0x7F00_0001)
    static let bob = ClientAddressKey.ipv4(0x7F00_0002)
    let start = ContinuousClock.now

    @Test func newConnectionsAreLimitedToTheRateWithABurstOfAsMany() {
        var limiter = ClientAddressLimiter(policy: .init(newPerSecond: 5), now: start)
        for _ in 0..<5 { #expect(limiter.admit(Self.alice, now: start) == .admitted) }
        #expect(limiter.admit(Self.alice, now: start) == .refused(.tooManyNew))
        // Another address has its own bucket.
        #expect(limiter.admit(Self.bob, now: start) == .admitted)
        // A token comes back every 200 ms, and a refused connection used none.
        #expect(limiter.admit(Self.alice, now: start + .milliseconds(150)) == .refused(.tooManyNew))
        #expect(limiter.admit(Self.alice, now: start + .milliseconds(210)) == .admitted)
        #expect(limiter.admit(Self.alice, now: start + .milliseconds(220)) == .refused(.tooManyNew))
        // The bucket refills to the burst, no further.
        for _ in 0..<5 { #expect(limiter.admit(Self.alice, now: start + .seconds(60)) == .admitted) }
        #expect(limiter.admit(Self.alice, now: start + .seconds(60)) == .refused(.tooManyNew))
    }

    @Test func heldConnectionsAreLimitedUntilReleased() {
        var limiter = ClientAddressLimiter(policy: .init(maximumHeld: 2), now: start)
        for _ in 0..<2 {
            #expect(limiter.admit(Self.alice, now: start) == .admitted)
            limiter.hold(Self.alice)
        }
        #expect(limiter.admit(Self.alice, now: start) == .refused(.tooManyHeld))
        #expect(limiter.admit(Self.bob, now: start) == .admitted)
        // Admitted but not kept (its head was whole at once): it never counted.
        #expect(limiter.admit(Self.bob, now: start) == .admitted)
        #expect(limiter.held(by: Self.bob) == 0)
        limiter.release(Self.alice)
        #expect(limiter.held(by: Self.alice) == 1)
        #expect(limiter.admit(Self.alice, now: start) == .admitted)
        // Releasing more than was held cannot go negative.
        limiter.release(Self.bob)
        #expect(limiter.held(by: Self.bob) == 0)
    }

    /// A stream moving in on reload is counted past the limit, never refused, and then holds the address back.
    @Test func aConnectionKeptRegardlessIsCountedNotRefused() {
        let now = ContinuousClock.now
        var limiter = ClientAddressLimiter(policy: .init(maximumHeld: 1, maximumAddresses: 1), now: now)
        #expect(limiter.admit(Self.alice, now: now) == .admitted)
        limiter.hold(Self.alice)
        let movedIn = limiter.holdRegardless(Self.alice, now: now)
        #expect(movedIn && limiter.held(by: Self.alice) == 2)
        #expect(limiter.admit(Self.alice, now: now) == .refused(.tooManyHeld))
        let untracked = limiter.holdRegardless(Self.bob, now: now)
        #expect(!untracked, "the table is full: not tracked, so not released later")
        limiter.release(Self.alice)
        limiter.release(Self.alice)
        #expect(limiter.admit(Self.alice, now: now) == .admitted)
    }

    @Test func idleAddressesAreForgottenAndTheTableIsBounded() {
        var limiter = ClientAddressLimiter(policy: .init(maximumHeld: 10, newPerSecond: 1, maximumAddresses: 3), now: start)
        for address in UInt32(1)...3 { #expect(limiter.admit(.ipv4(address), now: start) == .admitted) }
        limiter.hold(.ipv4(1))
        // Full: a fourth address is admitted, but not tracked (fail open).
        #expect(limiter.admit(.ipv4(4), now: start) == .admittedUntracked)
        #expect(limiter.trackedAddresses == 3)
        // A second on, the buckets of 2 and 3 are full again and they hold nothing: forgotten to make room.
        // Address 1 still holds a connection and stays.
        #expect(limiter.admit(.ipv4(4), now: start + .seconds(1)) == .admitted)
        #expect(limiter.trackedAddresses == 2)
        #expect(limiter.held(by: .ipv4(1)) == 1)
        // The periodic sweep forgets idle addresses even when the table is not full.
        limiter.release(.ipv4(1))
        #expect(limiter.admit(.ipv4(5), now: start + ClientAddressLimiter.sweepInterval + .seconds(1)) == .admitted)
        #expect(limiter.trackedAddresses == 1)
    }

    @Test func theLimiterIsOffWithoutALimit() {
        #expect(!ClientAddressLimiter.Policy().isEnabled)
        #expect(ClientAddressLimiter.Policy(maximumHeld: 1).isEnabled)
        #expect(ClientAddressLimiter.Policy(newPerSecond: 1).isEnabled)
    }

    @Test func keysAreIPv4AddressesAndIPv6Networks() throws {
        #expect(ClientAddressKey(Self.ipv4("203.0.113.7")) == .ipv4(0xCB00_7107))
        #expect(ClientAddressKey(Self.ipv4("203.0.113.7"))?.description == "203.0.113.7")
        // Every address of a /64 is one client; the next /64 is another.
        let network = ClientAddressKey(Self.ipv6("2001:db8:1:2::1"))
        #expect(network == .ipv6Network(0x2001_0db8_0001_0002))
        #expect(ClientAddressKey(Self.ipv6("2001:db8:1:2:ffff:ffff:ffff:ffff")) == network)
        #expect(ClientAddressKey(Self.ipv6("2001:db8:1:3::1")) != network)
        #expect(network?.description == "2001:db8:1:2::/64")
        // IPv4 through a dual-stack listener, or NAT64: the IPv4 address, not one /64 shared by all of IPv4.
        #expect(ClientAddressKey(Self.ipv6("::ffff:203.0.113.7")) == .ipv4(0xCB00_7107))
        #expect(ClientAddressKey(Self.ipv6("64:ff9b::203.0.113.7")) == .ipv4(0xCB00_7107))
        var unix = sockaddr_storage()
        unix.ss_family = sa_family_t(AF_UNIX)
        #expect(ClientAddressKey(unix) == nil)
    }

    static func ipv4(_ text: String) -> sockaddr_storage {
        var storage = sockaddr_storage()
        withUnsafeMutableBytes(of: &storage) { raw in
            let address = raw.baseAddress!.assumingMemoryBound(to: sockaddr_in.self)
            address.pointee.sin_family = sa_family_t(AF_INET)
            _ = inet_pton(AF_INET, text, &address.pointee.sin_addr)
        }
        return storage
    }

    static func ipv6(_ text: String) -> sockaddr_storage {
        var storage = sockaddr_storage()
        withUnsafeMutableBytes(of: &storage) { raw in
            let address = raw.baseAddress!.assumingMemoryBound(to: sockaddr_in6.self)
            address.pointee.sin6_family = sa_family_t(AF_INET6)
            _ = inet_pton(AF_INET6, text, &address.pointee.sin6_addr)
        }
        return storage
    }
}
