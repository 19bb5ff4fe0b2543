import NIOCore
import NIOPosix

/// One end of a supervisor–worker control socket, in SwiftNIO: the frame codec, then the side's own handler.
public enum ControlChannel {
    /// Adopts `fd` (a connected `AF_UNIX` stream socket) on `group`; `makeHandler` runs on the channel's loop.
    public static func adopt(
        _ fd: CInt, group: any EventLoopGroup, makeHandler: @escaping @Sendable () -> any ChannelHandler
    ) -> EventLoopFuture<any Channel> {
        ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        ByteToMessageHandler(ControlFrameDecoder()), MessageToByteHandler(ControlFrameEncoder()), makeHandler(),
                    ])
                }
            }
            .withConnectedSocket(fd)
    }
}
