#if canImport(Glibc)
import Glibc
#endif
import SystemPackage

/// Sends and receives one file descriptor with a small payload over an `AF_UNIX` socket,
/// as `SCM_RIGHTS` ancillary data: the one transport SwiftNIO does not offer.
///
/// Used on `SOCK_SEQPACKET` pairs, so each payload arrives whole with its descriptor.
public enum DescriptorPassing {
    /// The largest payload a message may carry; longer ones are refused by both sides.
    public static let maximumPayload = 64 * 1024
    /// The most descriptors one message may carry (`ReceiveBuffers` has room for this many).
    public static let maximumDescriptors = 16

    /// `CMSG_ALIGN`, `CMSG_SPACE` and `CMSG_LEN`: C macros that do not import into Swift.
    static func controlAlign(_ length: Int) -> Int {
        let alignment = MemoryLayout<Int>.size
        return (length + alignment - 1) & ~(alignment - 1)
    }
    static let controlHeaderSize = controlAlign(MemoryLayout<cmsghdr>.size)

    /// `sendmsg(2)` with one `SCM_RIGHTS` descriptor. The caller still owns `descriptor` afterwards
    /// (the receiver gets its own copy) and normally closes it at once.
    /// Throws `Errno.wouldBlock` when the socket is non-blocking and its buffer is full, and `Errno.messageTooLong`
    /// for a payload over `maximumPayload` (the receiver would cut it short).
    public static func send(descriptor: CInt, payload: [UInt8], over socket: CInt) throws(Errno) {
        try withUnsafePointer(to: descriptor) { descriptor in
            payload.withUnsafeBytes { payload in
                Result { () throws(Errno) in
                    try send(descriptors: UnsafeBufferPointer(start: descriptor, count: 1), payload: payload, over: socket)
                }
            }
        }.get()
    }

    /// `sendmsg(2)` with up to `maximumDescriptors` descriptors in one `SCM_RIGHTS` message, all or none: one
    /// system call, and one wake-up of the receiver, for several connections. The caller still owns the descriptors.
    public static func send(descriptors: UnsafeBufferPointer<CInt>, payload: UnsafeRawBufferPointer, over socket: CInt) throws(Errno) {
        precondition(!descriptors.isEmpty && descriptors.count <= maximumDescriptors, "\(descriptors.count) descriptors in one message")
        guard payload.count <= maximumPayload else { throw .messageTooLong }
        let descriptorBytes = descriptors.count * MemoryLayout<CInt>.size
        let sent = try withUnsafeTemporaryAllocation(
            byteCount: controlHeaderSize + controlAlign(descriptorBytes), alignment: MemoryLayout<cmsghdr>.alignment
        ) { control throws(Errno) in
            control.initializeMemory(as: UInt8.self, repeating: 0)
            let header = control.baseAddress!.assumingMemoryBound(to: cmsghdr.self)
            header.pointee.cmsg_len = controlHeaderSize + descriptorBytes
            header.pointee.cmsg_level = SOL_SOCKET
            header.pointee.cmsg_type = Int32(SCM_RIGHTS)
            (control.baseAddress! + controlHeaderSize).copyMemory(from: descriptors.baseAddress!, byteCount: descriptorBytes)
            var padding: UInt8 = 0  // a zero-length message cannot carry ancillary data
            return try withUnsafeMutableBytes(of: &padding) { paddingBytes throws(Errno) in
                // sendmsg only reads the payload; `iovec` has no const variant.
                let body = payload.isEmpty ? paddingBytes : UnsafeMutableRawBufferPointer(mutating: payload)
                return try Syscall.retryingEINTR("sendmsg") {
                    withMessageHeader(payload: body, control: control) { message in sendmsg(socket, &message, Int32(MSG_NOSIGNAL)) }
                }
            }
        }
        precondition(sent == max(payload.count, 1), "sendmsg on a SOCK_SEQPACKET socket wrote part of a message")
    }

    /// One message taken off the socket: the payload and the descriptors that came with it, in the order sent.
    /// The caller owns the descriptors and must close or adopt them.
    public struct Received: Sendable {
        public var payload: [UInt8]
        public var descriptors: [CInt]
        /// The kernel could not install every descriptor sent (this process reached its open-files limit): the rest
        /// are gone, and `descriptors` are the first ones sent.
        public var descriptorsCutShort = false

        /// The one descriptor of a message that may carry at most one.
        public var descriptor: CInt? { descriptors.first }
    }

    /// Room for `receive`: a payload buffer of `maximumPayload` bytes and a control buffer, allocated once
    /// per receiving loop rather than once per message (a 64 KiB allocation per connection showed as heap
    /// growth and trimming in a worker's profile). Not for sharing between threads.
    public final class ReceiveBuffers {
        let payload = UnsafeMutableRawBufferPointer.allocate(byteCount: maximumPayload, alignment: 16)
        // Room for `maximumDescriptors`, so that a misbehaving sender's extras are received (and closed), not leaked.
        let control = UnsafeMutableRawBufferPointer.allocate(
            byteCount: controlHeaderSize + controlAlign(maximumDescriptors * MemoryLayout<CInt>.size),
            alignment: MemoryLayout<cmsghdr>.alignment)

        public init() {}

        deinit {
            payload.deallocate()
            control.deallocate()
        }
    }

    /// `recvmsg(2)` with `MSG_CMSG_CLOEXEC`. Returns nil at end of stream (the peer closed).
    /// More than `maximumDescriptors`, or a payload cut short, are closed and reported as `Errno.messageTooLong`.
    /// Descriptors this process had no room for (its open-files limit): with `maximumDescriptors` 1, reported as
    /// `Errno.tooManyOpenFiles` (and a descriptor that did arrive is closed); with more, the message is returned with
    /// `descriptorsCutShort`, so the caller can use those that arrived and count the rest as lost.
    /// With `waiting: false` (`MSG_DONTWAIT`) it throws `Errno.wouldBlock` when no message is queued.
    public static func receive(
        from socket: CInt, waiting: Bool = true, using buffers: ReceiveBuffers = ReceiveBuffers(), maximumDescriptors: Int = 1
    ) throws(Errno) -> Received? {
        let control = buffers.control
        var flags: CInt = 0
        var controlLength = 0
        let count = try Syscall.retryingEINTR("recvmsg") {
            withMessageHeader(payload: buffers.payload, control: control) { message in
                let received = recvmsg(socket, &message, Int32(MSG_CMSG_CLOEXEC) | (waiting ? 0 : Int32(MSG_DONTWAIT)))
                flags = message.msg_flags
                controlLength = received < 0 ? 0 : Int(message.msg_controllen)  // what the kernel filled in
                return received
            }
        }
        let descriptors = parseDescriptors(UnsafeRawBufferPointer(rebasing: control[..<min(controlLength, control.count)]))
        let cutShort = flags & Int32(MSG_CTRUNC) != 0
        if count == 0 && descriptors.isEmpty && !cutShort { return nil }
        if flags & Int32(MSG_TRUNC) != 0 || descriptors.count > maximumDescriptors || (cutShort && maximumDescriptors == 1) {
            descriptors.forEach(Syscall.close)
            // The kernel could not install the descriptor (RLIMIT_NOFILE reached): it is gone, and its connection with it.
            if cutShort && descriptors.isEmpty && flags & Int32(MSG_TRUNC) == 0 { throw .tooManyOpenFiles }
            throw .messageTooLong
        }
        return Received(
            payload: Array(UnsafeRawBufferPointer(rebasing: buffers.payload[..<count])), descriptors: descriptors,
            descriptorsCutShort: cutShort)
    }

    /// A `msghdr` over one payload buffer and a control buffer, for `sendmsg` and `recvmsg`.
    private static func withMessageHeader<Result>(
        payload: UnsafeMutableRawBufferPointer, control: UnsafeMutableRawBufferPointer, _ body: (inout msghdr) -> Result
    ) -> Result {
        var vector = iovec(iov_base: payload.baseAddress, iov_len: payload.count)
        return withUnsafeMutablePointer(to: &vector) { vectorPointer in
            var message = msghdr()
            message.msg_iov = vectorPointer
            message.msg_iovlen = 1
            message.msg_control = control.baseAddress
            message.msg_controllen = control.count
            return body(&message)
        }
    }

    /// Walks the control buffer's `cmsghdr`s (`CMSG_FIRSTHDR`/`CMSG_NXTHDR`) collecting `SCM_RIGHTS` descriptors.
    static func parseDescriptors(_ bytes: UnsafeRawBufferPointer) -> [CInt] {
        var descriptors: [CInt] = []
        var offset = 0
        while offset + controlHeaderSize <= bytes.count {
            let length = bytes.load(fromByteOffset: offset, as: Int.self)
            guard length >= controlHeaderSize, offset + length <= bytes.count else { break }
            let level = bytes.load(fromByteOffset: offset + MemoryLayout<Int>.size, as: CInt.self)
            let type = bytes.load(fromByteOffset: offset + MemoryLayout<Int>.size + MemoryLayout<CInt>.size, as: CInt.self)
            if level == SOL_SOCKET && type == Int32(SCM_RIGHTS) {
                let dataLength = length - controlHeaderSize
                for index in 0..<(dataLength / MemoryLayout<CInt>.size) {
                    descriptors.append(bytes.load(fromByteOffset: offset + controlHeaderSize + index * MemoryLayout<CInt>.size, as: CInt.self))
                }
            }
            offset += controlAlign(length)
        }
        return descriptors
    }
}
