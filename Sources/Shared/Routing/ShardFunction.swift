/// Which worker serves a user: a stable hash of the user id, so every process, every restart and every
/// build agrees (Swift's `Hasher` is seeded per process and cannot be used).
public enum ShardFunction {
    /// The shard of `userID` among `shardCount`: the high bits of `hash(of:)` scaled to the range
    /// (Lemire's multiply-shift), which needs no division and is uniform for any shard count.
    public static func shard(for userID: String, shardCount: Int) -> Int {
        precondition(shardCount > 0, "shard count must be positive")
        return Int(hash(of: userID).multipliedFullWidth(by: UInt64(shardCount)).high)
    }

    /// FNV-1a (64-bit) of the id's UTF-8 bytes, finished with murmur3's `fmix64`.
    ///
    /// FNV-1a alone is not enough: its low bits depend only on the low bits of each byte (modulo 2 it is the
    /// parity of the bytes), and its high bits barely see the last bytes; ids that differ in a counter then
    /// pile onto a few shards (30,000 ids shaped `churn-00000017-4f1c-8a2b-000000000017` all landed on shard
    /// 0 of 2). The finalizer makes every output bit depend on every input bit.
    public static func hash(of userID: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in userID.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        hash ^= hash >> 33
        hash &*= 0xff51_afd7_ed55_8ccd
        hash ^= hash >> 33
        hash &*= 0xc4ce_b9fe_1a85_ec53
        hash ^= hash >> 33
        return hash
    }
}
