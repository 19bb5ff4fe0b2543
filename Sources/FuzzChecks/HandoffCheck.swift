import Shared

/// Decodes the input as a hand-off message (errors are fine, crashes are not), and checks that a hand-off decoded
/// encodes back to itself.
enum HandoffCheck {
    static func check(_ input: UnsafeRawBufferPointer) -> Finding? {
        guard let handoff = try? Handoff(decoding: Array(input)) else { return nil }
        guard let again = try? Handoff(decoding: handoff.encoded()), again == handoff else {
            return Finding("\(handoff) does not survive encoding and decoding")
        }
        return nil
    }
}
