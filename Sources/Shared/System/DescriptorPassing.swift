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

    /// `CMSG_ALIGN`, `CMSG_SPACE` and `CMSG_LEN`: C macros that do not import into Swift.
    static func controlAlign(_ length: Int) -> Int {
        let alignment = MemoryLayout<Int>.size
        return (length + alignment - 1) & ~(alignment - 1)
    }
    static let controlHeaderSize = controlAlign(MemoryLayout<cmsghdr>.size)
    static let controlSpace = controlHeaderSize + controlAlign(MemoryLayout<CInt>.size)
    static let controlLength = controlHeaderSize + MemoryLayout<CInt>.size

    /// `sendmsg(2)` with one `SCM_RIGHTS` descriptor. The caller still owns `descriptor` afterwards
    /// (the receiver gets its own copy) and normally closes it at once.
    /// Throws `Errno.wouldBlock` when the socket is non-blocking and its buffer is full, and `Errno.messageTooLong`
    /// for a payload over `maximumPayload` (the receiver would cut it short).
    public static func send(descriptor: CInt, payload: [UInt8], over socket: CInt) throws(Errno) {
        guard payload.count <= maximumPayload else { throw .messageTooLong }
        var control = [UInt8](repeating: 0, count: controlSpace)
        var payload = payload.isEmpty ? [0] : payload  // a zero-length message cannot carry ancillary data
        let sent = try Syscall.retryingEINTR("sendmsg") {
            payload.withUnsafeMutableBytes { payloadBytes in
            control.withUnsafeMutableBytes { controlBytes in
                let header = controlBytes.baseAddress!.assumingMemoryBound(to: cmsghdr.self)
                header.pointee.cmsg_len = controlLength
                header.pointee.cmsg_level = SOL_SOCKET
                header.pointee.cmsg_type = Int32(SCM_RIGHTS)
                controlBytes.storeBytes(of: descriptor, toByteOffset: controlHeaderSize, as: CInt.self)
                return withMessageHeader(payload: payloadBytes, control: controlBytes) { message in
                    sendmsg(socket, &message, Int32(MSG_NOSIGNAL))
                }
            }
            }
        }
        precondition(sent == payload.count, "sendmsg on a SOCK_SEQPACKET socket wrote part of a message")
    }

    /// One message taken off the socket: the payload and the descriptor that came with it, if any.
    /// The caller owns `descriptor` and must close or adopt it.
    public struct Received: Sendable {
        public var payload: [UInt8]
        public var descriptor: CInt?
    }

    /// Room for `receive`: a payload buffer of `maximumPayload` bytes and a control buffer, allocated once
    /// per receiving loop rather than once per message (a 64 KiB allocation per connection showed as heap
    /// growth and trimming in a worker's profile). Not for sharing between threads.
    public final class ReceiveBuffers {
        let payload = UnsafeMutableRawBufferPointer.allocate(byteCount: maximumPayload, alignment: 16)
        // Room for several descriptors, so that a misbehaving sender's extras are received (and closed), not leaked.
        let control = UnsafeMutableRawBufferPointer.allocate(
            byteCount: controlHeaderSize + controlAlign(16 * MemoryLayout<CInt>.size), alignment: MemoryLayout<cmsghdr>.alignment)

        public init() {}

        deinit {
            payload.deallocate()
            control.deallocate()
        }
    }

    /// `recvmsg(2)` with `MSG_CMSG_CLOEXEC`. Returns nil at end of stream (the peer closed).
    /// Extra descriptors, or a message cut short, are closed and reported as `Errno.messageTooLong`; a descriptor
    /// this process had no room for (its open-files limit) as `Errno.tooManyOpenFiles`.
    /// With `waiting: false` (`MSG_DONTWAIT`) it throws `Errno.wouldBlock` when no message is queued.
    public static func receive(
        from socket: CInt, waiting: Bool = true, using buffers: ReceiveBuffers = ReceiveBuffers()
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
        if count == 0 && descriptors.isEmpty { return nil }
        // The kernel could not install the descriptor (RLIMIT_NOFILE reached): it is gone, and its connection with it.
        if flags & Int32(MSG_CTRUNC) != 0 && descriptors.isEmpty { throw .tooManyOpenFiles }
        if flags & Int32(MSG_TRUNC | MSG_CTRUNC) != 0 || descriptors.count > 1 {
            descriptors.forEach(Syscall.close)
            throw .messageTooLong
        }
        return Received(payload: Array(UnsafeRawBufferPointer(rebasing: buffers.payload[..<count])), descriptor: descriptors.first)
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
