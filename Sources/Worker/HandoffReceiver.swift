import Foundation
import Logging
import NIOCore
import NIOPosix
import Shared

/// Takes connections off the hand-off socket (`SCM_RIGHTS`) and adopts each into SwiftNIO.
/// `recvmsg` blocks, so it runs on a thread of its own; everything after the adoption runs on the event loop.
struct HandoffReceiver: Sendable {
    let socket: CInt
    let group: any EventLoopGroup
    let hub: NIOLoopBound<StreamHub>
    let responses: HTTPResponses
    let logger: Logger
    /// Bytes a stream may have waiting to be sent before it counts as a slow consumer.
    let maximumPendingBytes: Int

    /// Receives until the supervisor closes its end, then calls `finished`.
    func start(finished: @escaping @Sendable () -> Void) {
        let thread = Thread {
            receiveLoop()
            finished()
        }
        thread.name = "sse-handoff"
        thread.start()
    }

    /// Waits for a connection, then takes whatever else is queued, and has the event loop adopt the batch in
    /// one task: under a burst of connects that is one wake-up of the loop for many connections.
    private func receiveLoop() {
        let loop = group.next()
        var batch: [(CInt, Handoff)] = []
        while true {
            let received: DescriptorPassing.Received?
            do {
                received = try DescriptorPassing.receive(from: socket, waiting: batch.isEmpty)
            } catch .wouldBlock {
                let ready = batch
                batch = []
                loop.execute { for (fd, handoff) in ready { adopt(fd, handoff: handoff) } }
                continue
            } catch {
                logger.error("bad hand-off message; dropped", metadata: ["error": "\(error)"])
                continue
            }
            guard let received else {
                for (fd, _) in batch { Syscall.close(fd) }
                return
            }
            guard let fd = received.descriptor else {
                logger.error("hand-off message without a descriptor; dropped")
                continue
            }
            do {
                batch.append((fd, try Handoff(decoding: received.payload)))
            } catch {
                logger.error("unreadable hand-off; connection closed", metadata: ["error": "\(error)"])
                Syscall.close(fd)
            }
            if batch.count >= 256 {
                let ready = batch
                batch = []
                loop.execute { for (fd, handoff) in ready { adopt(fd, handoff: handoff) } }
            }
        }
    }

    private func adopt(_ fd: CInt, handoff: Handoff) {
        let hub = self.hub
        let responses = self.responses
        let logger = self.logger
        let waterMark = ChannelOptions.Types.WriteBufferWaterMark(low: maximumPendingBytes / 2, high: maximumPendingBytes)
        let isStream = handoff.route == .stream || handoff.route == .migrated
        ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // Set synchronously: a bootstrap's `channelOption`s are applied through futures, which
                    // showed in a worker's profile under a burst of connects.
                    let options = channel.syncOptions
                    try options?.setOption(ChannelOptions.writeBufferWaterMark, value: waterMark)
                    // A stream mostly writes; a small fixed receive buffer keeps idle streams cheap.
                    try options?.setOption(ChannelOptions.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 256))
                    if isStream {
                        try channel.pipeline.syncOperations.addHandler(LiveStreamHandler(userID: handoff.userID, hub: hub))
                    } else {
                        try channel.pipeline.syncOperations.addHandlers(
                            TopicRequestHandler.handlers(handoff: handoff, hub: hub, responses: responses))
                    }
                }
            }
            .withConnectedSocket(fd)
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    // On the channel's event loop (the loop of the future): the stream starts in this turn.
                    guard isStream, let live = try? channel.pipeline.syncOperations.handler(type: LiveStreamHandler.self) else {
                        return
                    }
                    if handoff.route == .migrated {
                        live.resume(channel: channel, descriptor: fd, handoff: handoff)
                    } else {
                        live.start(channel: channel, descriptor: fd, handoff: handoff, cors: responses.cors)
                    }
                case .failure(let error):
                    logger.warning("cannot adopt a handed-over connection", metadata: ["error": "\(error)"])
                }
            }
    }
}
