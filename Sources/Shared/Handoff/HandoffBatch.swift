import SystemPackage

/// Several connections handed to a worker in one `SCM_RIGHTS` message: one `sendmsg`, one `recvmsg` and one
/// wake-up for all of them, where each used to cost its own (about 4 µs a connection, measured on a 2-core VM).
///
/// Layout: `marker: u8` (0xBA, never a hand-off's version) · `count: u8` · count × (`length: u16 BE` · hand-off),
/// with the message's descriptors in the same order. A batch of one is sent as that hand-off alone, the layout
/// every release reads; only a worker that says it reads batches (`ControlFrame.batchedHandoffVersion`) gets more.
///
/// Reused from batch to batch by its one owner (the accept thread), so building one allocates nothing once warm.
public struct HandoffBatch: Sendable {
    public static let marker: UInt8 = 0xBA
    /// The most connections one batch carries: as many descriptors as one message may.
    public static let maximumCount = DescriptorPassing.maximumDescriptors

    public private(set) var descriptors: [CInt] = []
    /// The batch layout, its count byte filled in as entries are appended.
    private var bytes: [UInt8] = [marker, 0]

    public init() {
        descriptors.reserveCapacity(Self.maximumCount)
        bytes.reserveCapacity(1024)
    }

    public var count: Int { descriptors.count }
    public var isEmpty: Bool { descriptors.isEmpty }

    /// Adds a connection unless the batch is full (`maximumCount`, or `DescriptorPassing.maximumPayload` bytes).
    /// A batch always takes its first: a hand-off fits one message (`Handoff` bounds every field).
    public mutating func append(descriptor: CInt, payload: [UInt8]) -> Bool {
        let fits = count < Self.maximumCount && bytes.count + 2 + payload.count <= DescriptorPassing.maximumPayload
        precondition(fits || !isEmpty, "a hand-off of \(payload.count) bytes does not fit one message")
        guard fits else { return false }
        descriptors.append(descriptor)
        bytes.append(UInt8(truncatingIfNeeded: payload.count >> 8))
        bytes.append(UInt8(truncatingIfNeeded: payload.count))
        bytes.append(contentsOf: payload)
        bytes[1] = UInt8(count)
        return true
    }

    public mutating func removeAll() {
        descriptors.removeAll(keepingCapacity: true)
        bytes.removeSubrange(2...)
        bytes[1] = 0
    }

    /// Sends the batch (see `DescriptorPassing.send`): throws `Errno.wouldBlock` when the socket has no room for all
    /// of it, and nothing was sent.
    public func send(over socket: CInt) throws(Errno) {
        precondition(!isEmpty, "an empty batch")
        try descriptors.withUnsafeBufferPointer { descriptors in
            payload.withUnsafeBytes { payload in
                Result { () throws(Errno) in try DescriptorPassing.send(descriptors: descriptors, payload: payload, over: socket) }
            }
        }.get()
    }

    /// What `send` sends with the descriptors: a batch of one goes out in the single layout, which a worker of any
    /// release reads.
    public var payload: ArraySlice<UInt8> { count == 1 ? bytes[4...] : bytes[...] }

    /// Whether a received payload is a batch (a single hand-off starts with its version).
    public static func isBatch(_ payload: [UInt8]) -> Bool { payload.first == marker }

    /// The hand-offs a received message carries, in the order of its descriptors: a batch's entries, or the single
    /// hand-off the message is.
    public static func handoffs(in payload: [UInt8]) throws(ControlProtocolError) -> [ArraySlice<UInt8>] {
        isBatch(payload) ? try entries(of: payload) : [payload[...]]
    }

    /// The hand-offs of a received batch, in the order of its descriptors.
    public static func entries(of payload: [UInt8]) throws(ControlProtocolError) -> [ArraySlice<UInt8>] {
        guard payload.count >= 2, payload[0] == marker else { throw ControlProtocolError(.malformed, "not a hand-off batch") }
        let count = Int(payload[1])
        guard (2...maximumCount).contains(count) else { throw ControlProtocolError(.malformed, "a hand-off batch of \(count)") }
        var entries: [ArraySlice<UInt8>] = []
        entries.reserveCapacity(count)
        var offset = 2
        for _ in 0..<count {
            guard offset + 2 <= payload.count else { throw ControlProtocolError(.malformed, "a hand-off batch cut short") }
            let length = Int(payload[offset]) << 8 | Int(payload[offset + 1])
            offset += 2
            guard offset + length <= payload.count else { throw ControlProtocolError(.malformed, "a hand-off batch cut short") }
            entries.append(payload[offset..<(offset + length)])
            offset += length
        }
        guard offset == payload.count else { throw ControlProtocolError(.malformed, "bytes after a hand-off batch") }
        return entries
    }
}
