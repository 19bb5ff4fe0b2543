import NIOCore
import NIOPosix

/// One end of a supervisor–worker control socket, in SwiftNIO: the frame codec, then the side's own handler.
public enum ControlChannel {
    /// Adopts `fd` (a connected `AF_UNIX` stream socket) on `group`; `makeHandler` runs on the channel's loop.
    /// With `backlog`, the channel turns unwritable while more than that many bytes wait to be sent. A channel taken
    /// over mid-life (an in-place upgrade) names the version its peer speaks, the bytes already read from it, and
    /// the frames its previous owner wrote and did not send.
    public static func adopt(
        _ fd: CInt, group: any EventLoopGroup, backlog: ChannelOptions.Types.WriteBufferWaterMark? = nil,
        peerVersion: UInt8? = nil, unread: ByteBuffer = ByteBuffer(), unsent: ByteBuffer = ByteBuffer(),
        makeHandler: @escaping @Sendable () -> any ChannelHandler
    ) -> EventLoopFuture<any Channel> {
        ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let backlog { try channel.syncOptions?.setOption(ChannelOptions.writeBufferWaterMark, value: backlog) }
                    try channel.pipeline.syncOperations.addHandlers([
                        ControlFrameHandler(peerVersion: peerVersion, unread: unread, unsent: unsent), makeHandler(),
                    ])
                }
            }
            .withConnectedSocket(fd)
    }
}
