import Foundation
import Shared
import Testing

@Suite("The shard function: stable, and even for every id shape and shard count")
struct ShardFunctionTests {
    @Test func isStableAcrossProcessesAndBuilds() {
        // Fixed values (FNV-1a 64, fmix64, multiply-shift), so any change of function is caught: it moves users.
        #expect(ShardFunction.hash(of: "") == 0xefd0_1f60_ba99_2926)
        #expect(ShardFunction.hash(of: "a") == 0x82a2_a958_a9be_ce5b)
        #expect(ShardFunction.hash(of: "alice") == 0x3507_d047_a67c_08f4)
        let expected: [(String, [Int])] = [
            ("", [1, 2, 6, 59]), ("a", [1, 1, 3, 32]), ("alice", [0, 0, 1, 13]), ("42", [1, 1, 3, 32]),
            ("churn-00000017-4f1c-8a2b-000000000017", [0, 0, 1, 12]), ("user@example.com", [1, 1, 4, 38]),
        ]
        for (id, shards) in expected {
            #expect([2, 3, 7, 64].map { ShardFunction.shard(for: id, shardCount: $0) } == shards, "\(id)")
        }
        #expect(ShardFunction.shard(for: "anyone", shardCount: 1) == 0)
    }

    /// Realistic user ids, 30,000 of each shape.
    enum IDShape: String, CaseIterable, CustomTestStringConvertible {
        case prefixAndCounter, plainNumbers, largeNumbers, uuids, emailAddresses, churn

        var testDescription: String { rawValue }

        func ids(count: Int) -> [String] {
            var random = SplitMix64(seed: 0x5EED)
            return (0..<count).map { index in
                switch self {
                case .prefixAndCounter: "user-\(index)"
                case .plainNumbers: String(index)
                case .largeNumbers: String(100_000_000 + index)
                case .uuids: Self.uuid(random.next(), random.next())
                case .emailAddresses: "user\(index)@example.com"
                // A counter written twice: every id has the same byte parity pattern, which broke FNV-1a % 2.
                case .churn: "churn-\(Self.zeroPadded(index, 8))-4f1c-8a2b-\(Self.zeroPadded(index, 12))"
                }
            }
        }

        private static func zeroPadded(_ value: Int, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }

        /// A version 4 UUID's text from 128 random bits.
        private static func uuid(_ high: UInt64, _ low: UInt64) -> String {
            let high = high & 0xFFFF_FFFF_FFFF_0FFF | 0x4000
            let low = low & 0x3FFF_FFFF_FFFF_FFFF | 0x8000_0000_0000_0000
            let bytes = (0..<8).map { UInt8(truncatingIfNeeded: high >> (56 - 8 * $0)) } + (0..<8).map { UInt8(truncatingIfNeeded: low >> (56 - 8 * $0)) }
            return UUID(uuid: (bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7], bytes[8], bytes[9],
                               bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15])).uuidString.lowercased()
        }
    }

    /// For 2 to 64 shards: no shard is more than 5 standard deviations off the mean (for 2 workers that is
    /// within 4 % of it, for 64 within 23 %: 469 ids a shard cannot be spread more tightly at random), and the
    /// counts pass a chi-square test of uniformity at p = 0.0001.
    @Test(arguments: IDShape.allCases)
    func spreadsEvenly(_ shape: IDShape) {
        let idCount = 30_000
        let hashes = shape.ids(count: idCount).map(ShardFunction.hash(of:))
        for shardCount in 2...64 {
            var counts = [Int](repeating: 0, count: shardCount)
            for hash in hashes { counts[Int(hash.multipliedFullWidth(by: UInt64(shardCount)).high)] += 1 }
            let mean = Double(idCount) / Double(shardCount)
            let deviation = (mean * (1 - 1 / Double(shardCount))).squareRoot()
            let worst = counts.map { abs(Double($0) - mean) }.max()!
            #expect(worst <= 5 * deviation, "\(shardCount) shards: \(counts)")
            let chiSquare = counts.reduce(0) { $0 + (Double($1) - mean) * (Double($1) - mean) / mean }
            #expect(chiSquare < Self.chiSquareCritical(degreesOfFreedom: shardCount - 1), "\(shardCount) shards: \(counts)")
        }
        // The reduction used above is the shard function's own.
        #expect(ShardFunction.shard(for: shape.ids(count: 1)[0], shardCount: 5) == Int(hashes[0].multipliedFullWidth(by: 5).high))
    }

    /// The chi-square value exceeded with probability 0.0001 (Wilson–Hilferty; z = 3.719).
    static func chiSquareCritical(degreesOfFreedom k: Int) -> Double {
        let k = Double(k)
        let term = 2 / (9 * k)
        let root = 1 - term + 3.719 * term.squareRoot()
        return k * root * root * root
    }
}

/// A seeded generator (SplitMix64), so the UUID shape is the same on every run.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
