import Foundation
import Logging
import NIOCore
import NIOPosix
import Prometheus
import ServiceLifecycle
import Shared

/// The supervisor, assembled and run: the listeners, the accept thread, the control plane on its event loop, the
/// operator's socket, SIGHUP reloads, and graceful shutdown on SIGTERM or SIGINT. What `sse-supervisor serve`
/// runs once it has read its options, its secret and the worker's user.
public struct SupervisorRuntime: Sendable {
    public struct Configuration: Sendable {
        public var listenAddresses: [String]
        public var operatorSocketPath: String?
        /// `--metrics-listen HOST:PORT` (under systemd, a socket named `metrics` instead).
        public var metricsListenAddress: String?
        public var workers: Int
        public var workerPath: String
        /// As root: the user the workers become (`PrivilegeDrop`); nil: they run as the supervisor does.
        public var workerUser: String?
        /// Verifies every token: the keys (a secret, PEM files, JWKS sources) and the claim rules.
        public var verifier: TokenVerifier
        /// What keeps the verifier's keys current (`--jwks-file`, `--jwks-url`); they run as long as the server.
        public var keySources: [any Service] = []
        public var headTimeout: Duration
        public var maximumHeadBytes: Int
        /// Users' tokens remembered as verified by the accept thread (`CachingTokenVerifier`); 0: none.
        public var tokenCacheSize = 65_536
        /// How long the accept thread lets connections gather after a busy turn (`--accept-batch-us`); zero: never.
        public var acceptBatchWindow = Duration.microseconds(3000)
        /// How long a publisher's connection may idle between requests (`--keepalive-timeout`); nil: one request each.
        public var keepAliveTimeout: Duration? = .seconds(30)
        /// A worker silent this long is killed and restarted (`--worker-hang-timeout`).
        public var workerHangTimeout: Duration = .seconds(15)
        /// How long a dead worker's shard waits before it starts another (`--worker-restart-delay-ms`).
        public var restartBackoff = RestartBackoff()
        public var workerWait: Duration
        public var workerBacklogBytes: Int
        public var clientLimits: ClientAddressLimiter.Policy
        public var logLevel: Logger.Level
        public var stream: StreamOptions
        /// With `--postgres-url`: the shared log this host joined, and where it stood (`SharedLogStart`).
        public var sharedLog: (log: any SharedEventLog, start: SharedLogStart)?
        /// The program a reload re-executes (the path this one was started as) and its arguments.
        public var executable = ""
        public var arguments: [String] = []
        /// The state the previous program of this process handed over (an in-place upgrade), if it did.
        public var resuming: UpgradeState?
        /// The descriptors this process's parent gave it (`UpgradeStateFile.inheritedDescriptors`).
        public var inherited: [CInt] = []

        public init(
            listenAddresses: [String], operatorSocketPath: String?, workers: Int, workerPath: String, workerUser: String?,
            verifier: TokenVerifier, headTimeout: Duration, maximumHeadBytes: Int, workerWait: Duration, workerBacklogBytes: Int,
            clientLimits: ClientAddressLimiter.Policy, logLevel: Logger.Level, stream: StreamOptions
        ) {
            self.listenAddresses = listenAddresses
            self.operatorSocketPath = operatorSocketPath
            self.workers = workers
            self.workerPath = workerPath
            self.workerUser = workerUser
            self.verifier = verifier
            self.headTimeout = headTimeout
            self.maximumHeadBytes = maximumHeadBytes
            self.workerWait = workerWait
            self.workerBacklogBytes = workerBacklogBytes
            self.clientLimits = clientLimits
            self.logLevel = logLevel
            self.stream = stream
        }
    }

    let configuration: Configuration
    let logger: Logger

    public init(configuration: Configuration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    public func run() async throws {
        let c = configuration
        let listeners: [CInt]
        let operatorSocket: CInt?
        let metricsListener: CInt?
        if let resuming = c.resuming {
            (listeners, operatorSocket, metricsListener) = (resuming.listeners, resuming.operatorSocket, resuming.metricsListener)
        } else {
            (listeners, operatorSocket, metricsListener) = try Listeners.open(
                addresses: c.listenAddresses, controlPath: c.operatorSocketPath, metricsAddress: c.metricsListenAddress, logger: logger)
        }
        // Counted always (a few atomic increments); exported, through swift-prometheus, only with a metrics listener.
        let registry = PrometheusCollectorRegistry()
        let metrics =
            metricsListener == nil
            ? HostMetrics.unexported(shardCount: c.workers)
            : HostMetrics(shardCount: c.workers, factory: PrometheusMetricsFactory(registry: registry))

        // One event loop: the control plane, the workers' control channels, and the connections the supervisor
        // answers itself. The accept thread is apart (`AcceptReactor`).
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let eventLoop = group.next()
        let verifier = c.verifier
        let tables = try HandoffTablePublisher(shardCount: c.workers)
        // Event ids are `<epoch>-<position>`: a single host's epoch is its start time; a shared log's is its identity,
        // so every host gives an event the same id and a client may resume on any of them. An upgrade keeps it.
        let epoch = c.resuming?.epoch ?? c.sharedLog?.start.identity ?? UInt64(WallClock.milliseconds())
        var settings = ControlPlane.Settings(
            shardCount: c.workers, workerPath: c.workerPath,
            workerArguments: { [stream = c.stream, logLevel = c.logLevel, workerUser = c.workerUser, hubWide = c.sharedLog != nil] shard in
                WorkerLaunch.arguments(
                    shard: shard, epoch: epoch, stream: stream, logLevel: logLevel, user: workerUser, hubWideUsers: hubWide)
            },
            historySize: c.stream.historySize, historyTTL: .seconds(c.stream.historyTtl), historyBytes: c.stream.historyBytes,
            epoch: epoch, workerBacklogBytes: c.workerBacklogBytes)
        settings.metrics = metrics
        settings.restartBackoff = c.restartBackoff
        settings.liveness.hung = c.workerHangTimeout
        settings.liveness.busyHung = max(.seconds(60), c.workerHangTimeout * 4)
        let handOver = try AcceptHandOver()
        let localConnections = OpenConnections()
        let plane = try await eventLoop.submit { [settings] in
            let plane = ControlPlane(
                eventLoop: eventLoop, settings: settings, tables: tables, logger: logger, sharedLog: c.sharedLog, resuming: c.resuming)
            plane.upgrade = UpgradeResources(
                executable: c.executable, arguments: c.arguments, listeners: listeners, operatorSocket: operatorSocket,
                // The sockets systemd passed were inherited too; they are the listeners.
                inherited: c.resuming?.inherited
                    ?? c.inherited.filter { !listeners.contains($0) && $0 != operatorSocket && $0 != metricsListener },
                accept: handOver, localConnections: localConnections)
            plane.upgrade?.metricsListener = metricsListener
            return NIOLoopBound(plane, eventLoop: eventLoop)
        }.get()
        // Publishers are few: a small cache holds every token they use at once, while --token-cache-size 0 still
        // turns caching off.
        let publisherTokens = try await eventLoop.submit {
            NIOLoopBound(CachingTokenVerifier(verifier: verifier, capacity: min(c.tokenCacheSize, 1024)), eventLoop: eventLoop)
        }.get()
        let api = SupervisorAPI(
            publisherTokens: publisherTokens, plane: plane, responses: HTTPResponses(cors: c.stream.corsPolicy), logger: logger)
        let localServer = LocalHTTPServer(
            group: group, api: api, logger: logger, requestTimeout: .seconds(Int64(c.stream.requestTimeout)),
            keepAliveTimeout: c.keepAliveTimeout.map { TimeAmount($0) }, maximumHeadBytes: c.maximumHeadBytes, open: localConnections)
        if let metricsListener {
            try await MetricsServer.start(listener: metricsListener, group: group, registry: registry, plane: plane, logger: logger)
            try await eventLoop.submit { plane.value.startMetricsSampling() }.get()
        }
        var router = ConnectionRouter(
            verifier: verifier, shardCount: c.workers, localServer: localServer, metrics: metrics, logger: logger, workerWait: c.workerWait,
            retryMilliseconds: c.stream.retryMs)
        router.cookieAuth = c.stream.authCookie.map { CookieAuth(name: $0, cors: c.stream.corsPolicy) }
        let operators = OperatorConnections(plane: plane, api: api, logger: logger)
        router.operatorConnections = operators
        let carried = c.resuming.map { state in
            AcceptHandOver.Held(
                unrouted: state.connections,
                waiting: state.waitingHandoffs.map { AcceptHandOver.Waiting(fd: $0.fd, shard: $0.shard, payload: [UInt8]($0.payload)) })
        }
        let reactor = AcceptReactor(
            listeners: listeners, operatorListener: operatorSocket,
            limits: .init(
                headTimeout: c.headTimeout, maximumHeadBytes: c.maximumHeadBytes, perClientAddress: c.clientLimits, tokenCacheSize: c.tokenCacheSize,
                batchWindow: c.acceptBatchWindow),
            router: router, tables: tables, handOver: handOver, carried: carried ?? AcceptHandOver.Held(), logger: logger)
        var sharedLogService: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let sharedLog = c.sharedLog?.log {
            sharedLogService = [
                .init(service: SharedLogService(log: sharedLog, hub: SharedLogHub(plane: plane)), successTerminationBehavior: .gracefullyShutdownGroup)
            ]
        }
        let services = ServiceGroup(
            configuration: .init(
                // Shut down in reverse order, each once the one after it has finished: first the accept thread (no new
                // connection is taken that no worker would serve; the socket keeps them for the next start), then
                // reloads, then the control plane (STOPPING=1, every worker ends its streams and exits), then the
                // shared log's follower (this host leaves the hub).
                // The key sources first, so they stop last: a token is verified until the last connection is taken.
                services: c.keySources.map { .init(service: $0) } + sharedLogService + [
                    .init(
                        service: ControlPlaneService(plane: plane, resuming: c.resuming, operators: operators),
                        successTerminationBehavior: .gracefullyShutdownGroup),
                    .init(service: ReloadOnHangup(plane: plane), successTerminationBehavior: .gracefullyShutdownGroup),
                    .init(service: reactor, successTerminationBehavior: .gracefullyShutdownGroup),
                ],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            ))
        logger.info("sse-hub starting", metadata: ["workers": "\(c.workers)", "pid": "\(Syscall.processID)"])
        try await services.run()
        for listener in listeners { Syscall.close(listener) }
        if let operatorSocket { Syscall.close(operatorSocket) }
        try await group.shutdownGracefully()  // closes the metrics listener's channel, and with it its socket
        logger.info("sse-hub stopped")
    }
}
