import Shared

/// Decodes the input as a hand-off message, a single hand-off or a batch (errors are fine, crashes are not), and
/// checks that what decodes encodes back to itself.
enum HandoffCheck {
    static func check(_ input: UnsafeRawBufferPointer) -> Finding? {
        let bytes = Array(input)
        guard bytes.count <= DescriptorPassing.maximumPayload else { return nil }  // no message carries more
        guard let entries = try? HandoffBatch.handoffs(in: bytes) else { return nil }
        guard HandoffBatch.isBatch(bytes) else { return checkOne(entries[0]) }
        var handoffs: [Handoff] = []
        for entry in entries {
            if let finding = checkOne(entry) { return finding }
            guard let handoff = try? Handoff(decoding: entry) else { return nil }
            handoffs.append(handoff)
        }
        // Batched again (with stand-in descriptors), the hand-offs read back the same, in the same order.
        var batch = HandoffBatch()
        for handoff in handoffs {
            guard let encoded = try? handoff.encoded(), batch.append(descriptor: 0, payload: encoded) else {
                return Finding("a batch of \(handoffs.count) read hand-offs does not fit a batch again")
            }
        }
        guard let again = try? HandoffBatch.entries(of: Array(batch.payload)).map({ try Handoff(decoding: $0) }), again == handoffs else {
            return Finding("a batch of \(handoffs.count) does not survive encoding and decoding")
        }
        return nil
    }

    private static func checkOne(_ bytes: ArraySlice<UInt8>) -> Finding? {
        guard let handoff = try? Handoff(decoding: bytes) else { return nil }
        guard let again = try? Handoff(decoding: handoff.encoded()), again == handoff else {
            return Finding("\(handoff) does not survive encoding and decoding")
        }
        return nil
    }
}
