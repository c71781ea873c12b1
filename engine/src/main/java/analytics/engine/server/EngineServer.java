package analytics.engine.server;

import analytics.engine.config.BuildInfo;
import analytics.engine.config.EngineConfig;
import analytics.engine.dispatch.Dispatcher;
import analytics.engine.metrics.EngineMetrics;
import analytics.engine.stats.NativeStatistics;
import analytics.engine.api.PythonBackend;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.grpc.Server;
import io.grpc.ServerInterceptors;
import io.grpc.netty.InternalNettyServerCredentials;
import io.grpc.netty.NettyServerBuilder;
import io.grpc.protobuf.services.HealthStatusManager;
import io.grpc.protobuf.services.ProtoReflectionServiceV1;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.epoll.Epoll;
import io.netty.channel.epoll.EpollEventLoopGroup;
import io.netty.channel.epoll.EpollServerDomainSocketChannel;
import io.netty.channel.epoll.EpollServerSocketChannel;
import io.netty.channel.nio.NioEventLoopGroup;
import io.netty.channel.socket.nio.NioServerSocketChannel;
import io.netty.channel.unix.DomainSocketAddress;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.time.Instant;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The network side of the engine: one gRPC server on TCP (with HTTP/1.1 /health and /metrics on the
 * same port, see {@link PortUnificationNegotiator}) and, when configured, a second gRPC server on a Unix
 * domain socket sharing the same event loops and services.
 */
public final class EngineServer implements AutoCloseable {

    private static final Logger LOG = LoggerFactory.getLogger(EngineServer.class);
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String ANALYZE = analytics.engine.proto.AnalyticsEngineGrpc.getAnalyzeMethod().getFullMethodName();
    static final int HANDSHAKE_TIMEOUT_S = 20;

    private final EngineConfig config;
    private final Dispatcher dispatcher;
    private final EngineMetrics metrics;
    private final PythonBackend python;
    private final Instant started = Instant.now();
    private final HealthStatusManager grpcHealth = new HealthStatusManager();
    private final ExecutorService compute;
    private final ExecutorService calls;
    /** Threads the call executor started (tests: a unary Analyze must not need one). */
    private final AtomicInteger callThreads = new AtomicInteger();
    private final EventLoopGroup boss;
    private final EventLoopGroup workers;
    /** {@link #workers} is the caller's ({@link #newSharedLoops}): shut down by its owner, not here. */
    private final boolean sharedWorkers;
    private final boolean epoll = Epoll.isAvailable();
    private final CallActivity callActivity = new CallActivity();
    private volatile boolean shuttingDown;
    private Server tcp;
    private Server uds;
    private Path socketFile;

    public EngineServer(EngineConfig config, Dispatcher dispatcher, EngineMetrics metrics) {
        this(config, dispatcher, metrics, null);
    }

    /**
     * @param sharedLoops the network event loops from {@link #newSharedLoops} (shared with the Python worker
     *                    connections; the caller shuts them down after this server's {@link #shutdown}), or null
     *                    for this server's own
     */
    public EngineServer(EngineConfig config, Dispatcher dispatcher, EngineMetrics metrics, EventLoopGroup sharedLoops) {
        this.config = config;
        this.dispatcher = dispatcher;
        this.metrics = metrics;
        this.python = dispatcher.python();
        this.compute = Executors.newFixedThreadPool(Math.max(2, Runtime.getRuntime().availableProcessors()),
                named("analytics-compute"));
        ThreadFactory callThread = named("grpc-call");
        this.calls = Executors.newCachedThreadPool(r -> {
            callThreads.incrementAndGet();
            return callThread.newThread(r);
        });
        if (sharedLoops != null && !epoll) {
            throw new IllegalArgumentException("shared event loops need netty-epoll");
        }
        this.sharedWorkers = sharedLoops != null;
        if (epoll) {
            boss = new EpollEventLoopGroup(1, named("grpc-boss"));
            workers = sharedLoops != null ? sharedLoops : new EpollEventLoopGroup(0, named("grpc-io"));
        } else {
            boss = new NioEventLoopGroup(1, named("grpc-boss"));
            workers = new NioEventLoopGroup(0, named("grpc-io"));
        }
    }

    /**
     * One epoll event loop per core, for the gRPC connections and the Python worker connections together
     * ({@code PythonWorkerPool.useEventLoops}): a cheap Python request whose gRPC connection and worker share a
     * loop is written, answered and responded to on that one thread. Null without epoll (the NIO fallback keeps
     * separate loops: the worker socket is epoll-only). The caller shuts it down after the server and the pool.
     */
    public static EventLoopGroup newSharedLoops() {
        if (!Epoll.isAvailable()) {
            return null;
        }
        return new EpollEventLoopGroup(Runtime.getRuntime().availableProcessors(), named("net-io"));
    }

    /** How many threads the call executor has started so far (the methods other than Analyze run there). */
    int callThreadsStarted() {
        return callThreads.get();
    }

    private static ThreadFactory named(String prefix) {
        AtomicInteger n = new AtomicInteger();
        return r -> {
            Thread t = new Thread(r, prefix + "-" + n.incrementAndGet());
            t.setDaemon(true);
            return t;
        };
    }

    public void start() throws IOException {
        try {
            startListeners();
        } catch (IOException | RuntimeException e) {
            // Nothing may stay behind when the engine cannot start (threads, a half-bound port).
            for (Server s : new Server[] {tcp, uds}) {
                if (s != null) {
                    s.shutdownNow();
                }
            }
            compute.shutdownNow();
            boss.shutdownGracefully(0, 1, TimeUnit.SECONDS);
            if (!sharedWorkers) {
                workers.shutdownGracefully(0, 1, TimeUnit.SECONDS);
            }
            throw e;
        }
    }

    private void startListeners() throws IOException {
        BearerAuth auth = new BearerAuth(config.authToken());
        HttpEndpoints http = new HttpEndpoints(this::health, metrics::scrape, auth);
        if (config.testMode() && !analytics.engine.stats.streaming.StreamingQuantiles.seedSketchRandom(42)) {
            LOG.warn("test_mode: could not seed the KLL sketch's random generator; quantile sketches vary per run");
        }
        StreamIngest streamIngest = new StreamIngest(dispatcher, NativeStatistics.KERNELS, metrics,
                new StreamIngest.Limits(config.streamMaxPoints(), config.streamExactMaxPoints(),
                        config.streamSketchK(), config.streamExactTotalBytes()));
        AnalyticsService service = new AnalyticsService(dispatcher, compute, calls, config.maxBatchSize(),
                config.batchConcurrency(), BuildInfo.VERSION, this::healthy, this::capabilities, streamIngest);
        EngineConfig.HostPort listen = config.listen();
        io.netty.handler.ssl.SslContext tls = config.tlsCert().isEmpty() ? null : loadTls();
        NettyServerBuilder b = NettyServerBuilder.forAddress(new InetSocketAddress(listen.host(), listen.port()),
                        InternalNettyServerCredentials.create(new PortUnificationNegotiator(http, tls)))
                .channelType(epoll ? EpollServerSocketChannel.class : NioServerSocketChannel.class);
        tcp = configure(b, service, auth).build().start();
        LOG.info("listening on {} ({}gRPC + HTTP/1.1 /health, /metrics){}", describeTcp(),
                tls != null ? "TLS only: " : "", auth.enabled() ? "; bearer token required" : "");
        if (!config.socketPath().isEmpty()) {
            startUds(service, auth);
        }
        grpcHealth.setStatus("", ServingStatus.SERVING);
        grpcHealth.setStatus("analytics.AnalyticsEngine", ServingStatus.SERVING);
    }

    /** The TLS context from tls_cert/tls_key; a clear startup error names the file at fault. */
    private io.netty.handler.ssl.SslContext loadTls() throws IOException {
        Path cert = Path.of(config.tlsCert());
        Path key = Path.of(config.tlsKey());
        for (Path f : new Path[] {cert, key}) {
            if (!Files.isReadable(f)) {
                throw new IOException("TLS file " + f + " does not exist or is not readable (settings tls_cert/tls_key)");
            }
        }
        try {
            return PortUnificationNegotiator.serverTls(cert.toFile(), key.toFile());
        } catch (IOException | IllegalArgumentException e) {
            throw new IOException("cannot load TLS certificate " + cert + " / key " + key
                    + " (need a PEM certificate chain and a PEM PKCS#8 private key): " + e.getMessage(), e);
        }
    }

    private NettyServerBuilder configure(NettyServerBuilder b, AnalyticsService service, BearerAuth auth) {
        return b.bossEventLoopGroup(boss)
                .workerEventLoopGroup(workers)
                // Analyze runs on the network thread from its headers to its response; AnalyticsService.analyze
                // moves anything but cheap work to its own executor. Every other method switches to the call
                // executor once its handler is chosen. The default executor must be the direct one: grpc-java
                // runs the method lookup and the call's start on it, and the first message and half-close
                // queue behind them, so with the call executor as default a unary Analyze ran there after all
                // (one thread hand-off each way per call; bench/README.md, "The small-request toll", round 4).
                .executor(com.google.common.util.concurrent.MoreExecutors.directExecutor())
                .callExecutor(new io.grpc.ServerCallExecutorSupplier() {
                    @Override
                    public <Q, R> java.util.concurrent.Executor getExecutor(io.grpc.ServerCall<Q, R> call,
                                                                          io.grpc.Metadata headers) {
                        return ANALYZE.equals(call.getMethodDescriptor().getFullMethodName()) ? null : calls;
                    }
                })
                .maxInboundMessageSize(config.maxMessageBytes())
                // grpc-java's default window is 1 MiB: an 8 MB request then stalls for a WINDOW_UPDATE round
                // trip every MiB until BDP tuning (which stops growing it at 8 MiB) catches up. A larger
                // *initial* window keeps BDP auto-tuning on; flowControlWindow(int) would switch it off.
                .initialFlowControlWindow(config.flowWindowBytes())
                // A connection must finish its HTTP/2 (and TLS) handshake within this, else it is closed:
                // bounds idle, half-open and slowloris connections; HTTP/1 connections (one request each,
                // see PortUnificationNegotiator) have this long to send their request and read the answer.
                .handshakeTimeout(HANDSHAKE_TIMEOUT_S, TimeUnit.SECONDS)
                // An HTTP/2 peer that stops answering (half-open, or a preface and then silence) is pinged
                // after 60 s of quiet and closed if it does not answer within 20 s.
                .keepAliveTime(60, TimeUnit.SECONDS)
                .keepAliveTimeout(20, TimeUnit.SECONDS)
                .permitKeepAliveTime(10, TimeUnit.SECONDS)
                .permitKeepAliveWithoutCalls(true)
                .addService(ServerInterceptors.intercept(service.bindBulk(), auth, callActivity)) // last runs first
                .addService(grpcHealth.getHealthService())
                .addService(ProtoReflectionServiceV1.newInstance())
                .addService(io.grpc.protobuf.services.ProtoReflectionService.newInstance());
    }

    private void startUds(AnalyticsService service, BearerAuth auth) throws IOException {
        if (!epoll) {
            throw new IOException("socket_path is set but netty-epoll is not available on this platform");
        }
        socketFile = Path.of(config.socketPath()).toAbsolutePath();
        Files.createDirectories(socketFile.getParent());
        if (Files.exists(socketFile)) {
            if (Files.isDirectory(socketFile)) {
                throw new IOException("socket_path " + socketFile + " is a directory");
            }
            // A file left by a previous run that died: if nobody answers on it, it is stale.
            if (isLive(socketFile)) {
                throw new IOException("socket_path " + socketFile + " is in use by another running process");
            }
            LOG.info("removing stale socket file {}", socketFile);
            Files.delete(socketFile);
        }
        NettyServerBuilder b = NettyServerBuilder.forAddress(new DomainSocketAddress(socketFile.toString()))
                .channelType(EpollServerDomainSocketChannel.class);
        uds = configure(b, service, auth).build().start();
        Files.setPosixFilePermissions(socketFile, PosixFilePermissions.fromString("rw-rw----"));
        LOG.info("listening on unix:{} (gRPC, mode 0660)", socketFile);
    }

    private static boolean isLive(Path socket) {
        try (java.nio.channels.SocketChannel ch = java.nio.channels.SocketChannel.open(
                java.net.UnixDomainSocketAddress.of(socket))) {
            return ch.isConnected();
        } catch (IOException e) {
            return false;
        }
    }

    /** The services as registered on the TCP listener (tests check which marshallers they use). */
    java.util.List<io.grpc.ServerServiceDefinition> servicesForTest() {
        return tcp.getServices();
    }

    /** The bound TCP port (useful when the configured port is 0). */
    public int port() {
        return ((InetSocketAddress) tcp.getListenSockets().get(0)).getPort();
    }

    private String describeTcp() {
        return config.listen().host() + ":" + port();
    }

    // ---------------------------------------------------------------- health

    /** The analytics calls open and started (for {@link IdleTrim}). */
    public CallActivity callActivity() {
        return callActivity;
    }

    /** Liveness for the systemd watchdog: the listener is up and its event loops accept work. */
    public boolean alive() {
        if (tcp == null || tcp.isTerminated()) {
            return false;
        }
        try {
            return workers.submit(() -> true).get(5, TimeUnit.SECONDS);
        } catch (Exception e) {
            return false;
        }
    }

    /** Ready = serving and, when Python workers are configured, at least one is ready. */
    public boolean healthy() {
        if (shuttingDown) {
            return false;
        }
        return python == null || python.isAvailable();
    }

    private Map<String, String> capabilities() {
        Map<String, String> c = new LinkedHashMap<>();
        c.put("version", BuildInfo.VERSION);
        c.put("git_commit", BuildInfo.GIT_COMMIT);
        c.put("java", Runtime.version().toString());
        c.put("native_algorithms", String.valueOf(dispatcher.registry().all().stream().filter(s -> s.nativeImpl()).count()));
        c.put("python_algorithms", String.valueOf(dispatcher.registry().all().stream().filter(s -> s.pythonImpl()).count()));
        c.put("implementations", python == null ? "native" : "native,python");
        c.put("uptime_s", String.valueOf(Duration.between(started, Instant.now()).toSeconds()));
        if (python != null) {
            pythonHealth(python.status()).forEach((k, v) -> c.put("python." + k, v instanceof String s ? s : toJson(v)));
        } else {
            c.put("python.workers", "0 (disabled)");
        }
        return c;
    }

    HttpEndpoints.Health health() {
        Map<String, Object> h = new LinkedHashMap<>();
        boolean ready = healthy();
        h.put("status", shuttingDown ? "stopping" : ready ? "ok" : "starting");
        h.put("version", BuildInfo.VERSION);
        h.put("uptime_s", Duration.between(started, Instant.now()).toSeconds());
        h.put("listen", describeTcp());
        if (socketFile != null) {
            h.put("socket", socketFile.toString());
        }
        h.put("python", python == null ? Map.of("enabled", false) : pythonHealth(python.status()));
        return new HttpEndpoints.Health(ready, toJson(h));
    }

    /**
     * The pool's status as /health shows it: {@code workers} is the list of worker processes (id, pid,
     * state, requests, restarts, rss_bytes, uptime_s) and {@code counts} the number per state.
     */
    static Map<String, Object> pythonHealth(Map<String, Object> status) {
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("enabled", true);
        status.forEach((k, v) -> {
            switch (k) {
                case "workers" -> out.put("counts", v);
                case "worker_list" -> out.put("workers", v);
                default -> out.put(k, v);
            }
        });
        return out;
    }

    private static String toJson(Object o) {
        try {
            return JSON.writeValueAsString(o);
        } catch (IOException e) {
            return "\"" + e.getMessage() + "\"";
        }
    }

    // ---------------------------------------------------------------- shutdown

    /**
     * Graceful stop: health turns NOT_SERVING, listeners stop accepting, in-flight calls get up to
     * {@code grace} to finish, then the rest are cancelled.
     */
    public void shutdown(Duration grace) {
        shuttingDown = true;
        grpcHealth.enterTerminalState();
        long deadline = System.nanoTime() + grace.toNanos();
        for (Server s : new Server[] {tcp, uds}) {
            if (s != null) {
                s.shutdown();
            }
        }
        for (Server s : new Server[] {tcp, uds}) {
            if (s == null) {
                continue;
            }
            try {
                long left = Math.max(0, deadline - System.nanoTime());
                if (!s.awaitTermination(left, TimeUnit.NANOSECONDS)) {
                    LOG.warn("grace period of {} s over: cancelling the calls still running", grace.toSeconds());
                    s.shutdownNow();
                    s.awaitTermination(2, TimeUnit.SECONDS);
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                s.shutdownNow();
            }
        }
        compute.shutdownNow();
        calls.shutdownNow();
        boss.shutdownGracefully(0, 1, TimeUnit.SECONDS);
        if (!sharedWorkers) {
            workers.shutdownGracefully(0, 1, TimeUnit.SECONDS);
        }
        if (socketFile != null) {
            try {
                Files.deleteIfExists(socketFile);
            } catch (IOException e) {
                LOG.warn("could not remove {}: {}", socketFile, e.getMessage());
            }
        }
    }

    @Override
    public void close() {
        shutdown(Duration.ofSeconds(config.shutdownGraceS()));
    }
}
