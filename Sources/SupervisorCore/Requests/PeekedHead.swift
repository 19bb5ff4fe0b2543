/// What the bytes peeked off a connection amount to under `--max-head-bytes`: the rule the accept thread applies at
/// each peek (it peeks at most `maximumHeadBytes + 1` bytes), as a value the tests hold to the limit's edges.
public enum PeekedHead: Sendable, Equatable {
    /// No end of a head yet, within the limit: wait for more bytes (or the head timeout). Never a decision.
    case incomplete
    /// The first head is the first `length` bytes; what follows it (a body, a pipelined request) is not read here.
    case complete(length: Int)
    /// Past the limit without the end of a head within it: refused (431), the request read no further.
    case tooLarge

    public init(_ bytes: UnsafeRawBufferPointer, maximumHeadBytes: Int) {
        if let length = RequestHeadPeek.headLength(in: bytes), length <= maximumHeadBytes {
            self = .complete(length: length)
        } else if bytes.count > maximumHeadBytes {
            self = .tooLarge
        } else {
            self = .incomplete
        }
    }

    public init(_ bytes: [UInt8], maximumHeadBytes: Int) {
        self = bytes.withUnsafeBytes { PeekedHead($0, maximumHeadBytes: maximumHeadBytes) }
    }
}
