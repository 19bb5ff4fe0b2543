import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import Shared

/// The metrics listener (`--metrics-listen`, or systemd's socket named `metrics`): `/metrics` in Prometheus' text
/// format, written by swift-prometheus from the registry the host's metrics feed; `/status`, a page for people; and
/// `/status/events`, the hub's own event stream that feeds it. Apart from the public port, so a scrape or a status
/// page never reaches it, and nothing here needs a token: bind it to a private address.
enum MetricsServer {
    /// Serves on `listener` (bound already) on the plane's loop, until the group shuts down.
    static func start(
        listener: CInt, group: any EventLoopGroup, registry: PrometheusCollectorRegistry, plane: NIOLoopBound<ControlPlane>, logger: Logger
    ) async throws {
        _ = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(MetricsHTTPHandler(registry: registry, plane: plane))
                }
            }
            .withBoundSocket(listener).get()
    }
}

/// One connection to the metrics listener: each request answered from the registry or the page, or (the status
/// stream) kept open for the plane's snapshots.
final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let registry: PrometheusCollectorRegistry
    private let plane: NIOLoopBound<ControlPlane>

    init(registry: PrometheusCollectorRegistry, plane: NIOLoopBound<ControlPlane>) {
        self.registry = registry
        self.plane = plane
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let head) = unwrapInboundIn(data) else { return }
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        guard head.method == .GET else {
            return respond(context, head, .methodNotAllowed, "application/json", ByteBuffer(string: #"{"success":false,"msg":"Only GET is served here"}"#))
        }
        switch path {
        case "/metrics":
            respond(context, head, .ok, "text/plain; version=0.0.4; charset=utf-8", ByteBuffer(bytes: registry.emitToBuffer()))
        case "/status", "/status/":
            respond(context, head, .ok, "text/html; charset=utf-8", ByteBuffer(string: StatusPage.html))
        case "/status/events":
            var headers = HTTPHeaders([("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")])
            headers.add(name: "X-Accel-Buffering", value: "no")
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .ok, headers: headers))), promise: nil)
            plane.value.addStatusStream(context.channel)
        default:
            respond(context, head, .notFound, "application/json", ByteBuffer(string: #"{"success":false,"msg":"Not found: /metrics, /status"}"#))
        }
    }

    private func respond(_ context: ChannelHandlerContext, _ request: HTTPRequestHead, _ status: HTTPResponseStatus, _ type: String, _ body: ByteBuffer) {
        var headers = HTTPHeaders([("Content-Type", type), ("Content-Length", String(body.readableBytes))])
        if !request.isKeepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        let keepAlive = request.isKeepAlive
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { [channel = context.channel] _ in
            if !keepAlive { channel.close(promise: nil) }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
