import NIOCore

/// A deadline for whatever a connection still owes (its request, or the end of a canned answer): `expired` runs
/// on the connection's loop when it passes. The timer is cancelled as soon as the connection closes, so it never
/// keeps a finished connection alive with its pipeline and the request body it held: it did, for 30 s, which made
/// a burst of publishes of 60 KB hold 300 MB in the supervisor.
public enum ConnectionDeadline {
    public static func schedule(_ context: ChannelHandlerContext, after timeout: TimeAmount, expired: @escaping () -> Void) {
        let scheduled = context.eventLoop.assumeIsolated().scheduleTask(in: timeout, expired)
        context.channel.closeFuture.whenComplete { _ in scheduled.cancel() }
    }
}
