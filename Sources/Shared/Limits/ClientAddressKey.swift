#if canImport(Glibc)
import Glibc
#endif

/// What the per-client limits count by: an IPv4 address, or an IPv6 /64 network (one subscriber's LAN
/// usually gets a whole /64, so counting single IPv6 addresses would let one client take 2^64 of them).
/// IPv4 clients of a dual-stack listener arrive as IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`), and NAT64
/// clients as `64:ff9b::a.b.c.d`: both count as the IPv4 address, not as one shared /64.
public enum ClientAddressKey: Hashable, Sendable, CustomStringConvertible {
    /// The address, in host byte order.
    case ipv4(UInt32)
    /// The first 64 bits of the address, in host byte order.
    case ipv6Network(UInt64)

    /// The key of the peer `accept4(2)` wrote; nil for other families (no limit applies to them).
    public init?(_ peer: sockaddr_storage) {
        var peer = peer
        switch CInt(peer.ss_family) {
        case AF_INET:
            let address = withUnsafeBytes(of: &peer) { $0.load(as: sockaddr_in.self) }
            self = .ipv4(UInt32(bigEndian: address.sin_addr.s_addr))
        case AF_INET6:
            let address = withUnsafeBytes(of: &peer) { $0.load(as: sockaddr_in6.self) }
            let (high, low) = withUnsafeBytes(of: address.sin6_addr) {
                (UInt64(bigEndian: $0.loadUnaligned(as: UInt64.self)), UInt64(bigEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
            }
            let embedsIPv4 = (high == 0 && low >> 32 == 0xFFFF) || (high == 0x0064_FF9B_0000_0000 && low >> 32 == 0)
            self = embedsIPv4 ? .ipv4(UInt32(truncatingIfNeeded: low)) : .ipv6Network(high)
        default:
            return nil
        }
    }

    /// `203.0.113.7`, or `2001:db8:1:2::/64`.
    public var description: String {
        switch self {
        case .ipv4(let address):
            return (0..<4).map { String(address >> (24 - 8 * $0) & 0xFF) }.joined(separator: ".")
        case .ipv6Network(let network):
            return (0..<4).map { String(network >> (48 - 16 * $0) & 0xFFFF, radix: 16) }.joined(separator: ":") + "::/64"
        }
    }
}
