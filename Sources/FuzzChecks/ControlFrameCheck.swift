import NIOCore
import Shared

/// Decodes every frame in the input as the control channel would (a buggy or compromised peer must only ever cause
/// a `ControlProtocolError`, never a crash), and checks that each message decoded encodes back to itself.
enum ControlFrameCheck {
    static func check(_ input: UnsafeRawBufferPointer) -> Finding? {
        var buffer = ByteBuffer(bytes: input)
        while true {
            let before = buffer
            let message: ControlMessage?
            do {
                message = try ControlFrame.decode(from: &buffer)
            } catch {
                return nil  // the channel is closed: nothing further is read
            }
            guard let message else {
                return buffer == before ? nil : Finding("decode returned nil but consumed bytes")
            }
            var encoded = ByteBuffer()
            ControlFrame.encode(message, into: &encoded)
            guard let again = try? ControlFrame.decode(from: &encoded), again == message, encoded.readableBytes == 0 else {
                return Finding("\(message) does not survive encoding and decoding")
            }
        }
    }
}
