package analytics.engine.server;

import analytics.engine.config.EngineConfig;
import analytics.engine.dispatch.AlgorithmRegistry;
import analytics.engine.dispatch.Dispatcher;
import analytics.engine.metrics.EngineMetrics;
import analytics.engine.proto.AnalyticsEngineGrpc;
import analytics.engine.stats.NativeStatistics;
import analytics.engine.api.PythonBackend;
import io.grpc.ManagedChannel;
import io.grpc.netty.NettyChannelBuilder;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;

/** A real engine (Netty server on an ephemeral port) plus a gRPC client, for end-to-end tests. */
public final class TestEngine implements AutoCloseable {
    public final EngineConfig config;
    public final EngineServer server;
    public final ManagedChannel channel;
    public final AnalyticsEngineGrpc.AnalyticsEngineBlockingStub stub;

    static {
        org.slf4j.bridge.SLF4JBridgeHandler.removeHandlersForRootLogger();
        org.slf4j.bridge.SLF4JBridgeHandler.install();
    }

    public TestEngine(Map<String, String> settings, PythonBackend python) throws Exception {
        this(settings, python, null);
    }

    /** {@code sharedLoops}: the server's network loops, shared with {@code python}'s worker connections (or null). */
    public TestEngine(Map<String, String> settings, PythonBackend python, io.netty.channel.EventLoopGroup sharedLoops)
            throws Exception {
        Map<String, String> o = new HashMap<>();
        o.put("listen", "127.0.0.1:0");
        o.put("workers", "0");
        o.put("shutdown_grace_s", "5");
        o.putAll(settings);
        config = EngineConfig.load(null, null, Map.of(), o);
        EngineMetrics metrics = new EngineMetrics();
        Dispatcher d = new Dispatcher(new AlgorithmRegistry(config.testMode()), NativeStatistics.KERNELS, python, metrics,
                new Dispatcher.Limits(config.maxDataPoints(), config.defaultTimeoutMs()));
        server = new EngineServer(config, d, metrics, sharedLoops);
        server.start();
        channel = NettyChannelBuilder.forAddress("127.0.0.1", server.port()).usePlaintext()
                .maxInboundMessageSize(64 << 20).build();
        stub = AnalyticsEngineGrpc.newBlockingStub(channel);
    }

    public TestEngine() throws Exception {
        this(Map.of(), null);
    }

    /** One HTTP/1.1 exchange over a plain socket, as curl would do it. Returns status line + body. */
    public String http(String request) throws IOException {
        try (Socket s = new Socket("127.0.0.1", server.port())) {
            s.setSoTimeout(10_000);
            OutputStream out = s.getOutputStream();
            out.write(request.getBytes(StandardCharsets.US_ASCII));
            out.flush();
            InputStream in = s.getInputStream();
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
    }

    public String get(String path) throws IOException {
        return http("GET " + path + " HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n");
    }

    @Override
    public void close() throws Exception {
        channel.shutdownNow();
        server.shutdown(Duration.ofSeconds(5));
    }
}
