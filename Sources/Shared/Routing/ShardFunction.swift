/// Which worker serves a user: a stable hash of the user id, so every process, every restart and every
/// build agrees (Swift's `Hasher` is seeded per process and cannot be used).
public enum ShardFunction {
    /// FNV-1a (64-bit) of the id's UTF-8 bytes, reduced modulo `shardCount`.
    public static func shard(for userID: String, shardCount: Int) -> Int {
        precondition(shardCount > 0, "shard count must be positive")
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in userID.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        return Int(hash % UInt64(shardCount))
    }
}
