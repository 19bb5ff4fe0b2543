#if canImport(Glibc)
import Glibc
#endif

/// What one subscriber received: which sequence numbers (a bitset), and how many arrived twice or out of order.
struct StreamTally {
    private var seen: [UInt64] = []
    private(set) var unique = 0
    private(set) var duplicates = 0
    private(set) var reordered = 0
    /// A hash of the order the events arrived in: streams of one channel that received the same events in the same
    /// order have the same one. With several hosts publishing at once there is no publisher's order to compare
    /// with (`reordered` counts against it), but every stream must still see one order, the hub's.
    private(set) var orderFingerprint: UInt64 = 14_695_981_039_346_656_037
    private var highest = -1

    mutating func record(_ sequence: Int) {
        guard sequence >= 0 else { return }
        let word = sequence / 64
        if word >= seen.count { seen.append(contentsOf: repeatElement(0, count: word - seen.count + 1)) }
        let bit = UInt64(1) << UInt64(sequence % 64)
        if seen[word] & bit != 0 {
            duplicates += 1
            return
        }
        seen[word] |= bit
        unique += 1
        orderFingerprint = (orderFingerprint ^ UInt64(sequence)) &* 1_099_511_628_211
        if sequence < highest { reordered += 1 }
        highest = max(highest, sequence)
    }
}

/// Reads `"seq":N` and `"t":N` out of SSE `data:` lines, and the value of `id:` lines, without building strings:
/// the load tool must cost little per event, or it measures itself instead of the server.
struct DataLineScanner {
    /// A line cut by the end of a read, kept until its newline arrives.
    private var partial: [UInt8] = []

    /// Feeds body bytes; calls `onID` with the value of every complete `id:` line, and `onEvent(seq, t)` for every
    /// complete `data:` line carrying both.
    mutating func feed(_ bytes: UnsafeRawBufferPointer, onID: (UnsafeRawBufferPointer) -> Void, onEvent: (Int, UInt64) -> Void) {
        guard let base = bytes.baseAddress else { return }
        var start = 0
        while start < bytes.count {
            guard let newline = memchr(base + start, 0x0A, bytes.count - start) else {
                if partial.count < 512 { partial += UnsafeRawBufferPointer(rebasing: bytes[start...]) }
                return
            }
            let end = base.distance(to: UnsafeRawPointer(newline))
            if partial.isEmpty {
                Self.scan(UnsafeRawBufferPointer(rebasing: bytes[start..<end]), onID, onEvent)
            } else {
                partial += UnsafeRawBufferPointer(rebasing: bytes[start..<end])
                partial.withUnsafeBytes { Self.scan($0, onID, onEvent) }
                partial.removeAll(keepingCapacity: true)
            }
            start = end + 1
        }
    }

    private static func scan(_ line: UnsafeRawBufferPointer, _ onID: (UnsafeRawBufferPointer) -> Void, _ onEvent: (Int, UInt64) -> Void) {
        if line.count > 3, line[0] == UInt8(ascii: "i"), line[1] == UInt8(ascii: "d"), line[2] == UInt8(ascii: ":") {
            var start = 3
            var end = line.count
            if line[start] == UInt8(ascii: " ") { start += 1 }
            if end > start, line[end - 1] == UInt8(ascii: "\r") { end -= 1 }
            return onID(UnsafeRawBufferPointer(rebasing: line[start..<end]))
        }
        guard line.count > 6, line[0] == UInt8(ascii: "d"), line[4] == UInt8(ascii: ":"),
            let sequence = number(after: seqKey, in: line), let sent = number(after: timeKey, in: line)
        else { return }
        onEvent(Int(sequence), sent)
    }

    private static let seqKey = Array(#""seq":"#.utf8)
    private static let timeKey = Array(#""t":"#.utf8)

    static func number(after key: [UInt8], in line: UnsafeRawBufferPointer) -> UInt64? {
        guard line.count >= key.count else { return nil }
        var start = 0
        while start + key.count <= line.count {
            if (0..<key.count).allSatisfy({ line[start + $0] == key[$0] }) {
                var index = start + key.count
                var value: UInt64 = 0
                var digits = 0
                while index < line.count, line[index] >= UInt8(ascii: "0"), line[index] <= UInt8(ascii: "9") {
                    value = value &* 10 &+ UInt64(line[index] - UInt8(ascii: "0"))
                    index += 1
                    digits += 1
                }
                return digits > 0 ? value : nil
            }
            start += 1
        }
        return nil
    }
}
