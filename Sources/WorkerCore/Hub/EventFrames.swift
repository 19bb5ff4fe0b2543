import NIOCore
import Shared

/// The SSE frame of a published event, as every stream receives it, live or replayed: `id: <epoch>-<sequence>`,
/// then its name and data. One writer, so a replayed event is byte for byte the live one.
struct EventFrames: Sendable {
    let epoch: UInt64

    func write(_ command: PublishCommand, into buffer: inout ByteBuffer) {
        SSEWireFormat.event(
            command.event, data: command.data, id: EventID(epoch: epoch, sequence: command.sequence).description, into: &buffer)
    }
}
