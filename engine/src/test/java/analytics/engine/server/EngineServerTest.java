package analytics.engine.server;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import analytics.engine.proto.AlgorithmInfo;
import analytics.engine.proto.AnalysisOptions;
import analytics.engine.proto.AnalysisRequest;
import analytics.engine.proto.AnalysisResponse;
import analytics.engine.proto.AnalyticsEngineGrpc;
import analytics.engine.proto.BatchAnalysisRequest;
import analytics.engine.proto.Empty;
import analytics.engine.proto.ErrorCode;
import analytics.engine.proto.HealthCheckRequest;
import analytics.engine.proto.HealthCheckResponse;
import analytics.engine.proto.StreamChunk;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.NettyChannelBuilder;
import io.grpc.reflection.v1.ServerReflectionGrpc;
import io.grpc.reflection.v1.ServerReflectionRequest;
import io.grpc.reflection.v1.ServerReflectionResponse;
import io.grpc.stub.MetadataUtils;
import io.grpc.stub.StreamObserver;
import io.netty.channel.epoll.EpollDomainSocketChannel;
import io.netty.channel.epoll.EpollEventLoopGroup;
import io.netty.channel.unix.DomainSocketAddress;
import java.io.OutputStream;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.stream.IntStream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** End to end through a real Netty server on an ephemeral port, native statistics only (workers = 0). */
class EngineServerTest {

    static TestEngine engine;

    @BeforeAll
    static void start() throws Exception {
        engine = new TestEngine();
    }

    @AfterAll
    static void stop() throws Exception {
        engine.close();
    }

    static AnalysisRequest.Builder req(String algorithm, double... data) {
        AnalysisRequest.Builder b = AnalysisRequest.newBuilder().setRequestId("r-" + algorithm).setAlgorithm(algorithm);
        for (double d : data) {
            b.addData(d);
        }
        return b;
    }

    /**
     * Analyze runs on the network thread from its headers to its response: with the call executor as grpc-java's
     * default, the method lookup and the call's start ran there and the message and half-close queued behind
     * them, one thread hand-off each way per call (bench/README.md, "The small-request toll", round 4).
     */
    @Test
    void aUnaryAnalyzeNeverNeedsTheCallExecutorWhileOtherMethodsUseIt() throws Exception {
        try (TestEngine e = new TestEngine()) {
            for (int i = 0; i < 50; i++) {
                AnalysisResponse r = e.stub.analyze(req("mean", 1, 2, i).setOptions(v7Options()).build());
                assertTrue(r.getSuccess(), r.getErrorMessage());
                assertEquals((3.0 + i) / 3, Double.parseDouble(r.getResultJson()), 1e-12, r.getResultJson());
            }
            AnalysisResponse unknown = e.stub.analyze(req("no_such_algorithm", 1, 2).build());
            assertFalse(unknown.getSuccess());
            assertEquals(ErrorCode.UNKNOWN_ALGORITHM, unknown.getErrorCode(), unknown.getErrorMessage());
            assertEquals(0, e.server.callThreadsStarted(), "an Analyze call ran on the call executor");
            assertFalse(e.stub.getSupportedAlgorithms(Empty.getDefaultInstance()).getAlgorithmsList().isEmpty());
            assertTrue(e.server.callThreadsStarted() >= 1, "GetSupportedAlgorithms did not use the call executor");
        }
    }

    @Test
    void aUnaryAnalyzeReportsTheDecodeOfItsDataBesideTheExecutionTime() {
        AnalysisRequest.Builder big = AnalysisRequest.newBuilder().setAlgorithm("mean").setRequestId("big");
        for (int i = 0; i < 100_000; i++) {
            big.addData(i);
        }
        long t0 = System.nanoTime();
        AnalysisResponse r = engine.stub.analyze(big.build());
        long elapsedUs = (System.nanoTime() - t0) / 1000;
        assertTrue(r.getSuccess(), r.getErrorMessage());
        assertEquals(99_999.0 / 2, Double.parseDouble(r.getResultJson()), 1e-9);
        java.util.Map<String, String> stats = r.getMetadata().getStatsMap();
        assertTrue(stats.containsKey("decode_us"), "no decode_us in " + stats);
        long decodeUs = Long.parseLong(stats.get("decode_us"));
        long executionUs = Long.parseLong(stats.get("execution_time_us"));
        assertTrue(decodeUs >= 0 && decodeUs + executionUs <= elapsedUs,
                "decode " + decodeUs + " + execution " + executionUs + " us, call " + elapsedUs + " us");
        // BatchAnalyze items are decoded by the generated parser, with the batch: no decode time of their own
        AnalysisResponse item = engine.stub.batchAnalyze(BatchAnalysisRequest.newBuilder()
                .addRequests(req("mean", 1, 2)).build()).next();
        assertTrue(item.getSuccess(), item.getErrorMessage());
        assertFalse(item.getMetadata().getStatsMap().containsKey("decode_us"));
    }

    static AnalysisOptions v7Options() {
        return AnalysisOptions.newBuilder().setPreferRust(true).setAllowPython(true).setTimeoutMs(30000)
                .setIncludeMetadata(true).build();
    }

    @Test
    void meanIsABareNumberAndCountAnInteger() {
        AnalysisResponse r = engine.stub.analyze(req("mean", 1, 2, 3, 4, 5).setOptions(v7Options()).build());
        assertTrue(r.getSuccess(), r.getErrorMessage());
        assertEquals("r-mean", r.getRequestId());
        assertEquals("3.0", r.getResultJson());
        assertEquals("native", r.getMetadata().getImplementation());
        assertEquals("mean", r.getMetadata().getAlgorithm());
        assertEquals(5, r.getMetadata().getDataSize());
        assertEquals(ErrorCode.ERROR_CODE_UNSPECIFIED, r.getErrorCode());

        AnalysisResponse c = engine.stub.analyze(req("count", 1, 2, 3).build());
        assertEquals("3", c.getResultJson());
    }

    @Test
    void requestWithoutOptionsPrefersNativeAndIncludesMetadata() {
        AnalysisResponse r = engine.stub.analyze(req("variance", 1e9 + 1, 1e9 + 2, 1e9 + 3).build());
        assertTrue(r.getSuccess(), r.getErrorMessage());
        assertEquals("1.0", r.getResultJson());
        assertEquals("native", r.getMetadata().getImplementation());
    }

    @Test
    void summaryHasTheContractKeys() throws Exception {
        AnalysisResponse r = engine.stub.analyze(req("summary", 4, 1, 3, 2, 5, 7).build());
        assertTrue(r.getSuccess(), r.getErrorMessage());
        var node = analytics.engine.dispatch.ResultJson.mapper().readTree(r.getResultJson());
        for (String k : List.of("count", "mean", "median", "std", "variance", "min", "max", "range", "q25", "q75",
                "autocorr")) {
            assertTrue(node.has(k), "summary lacks " + k + ": " + r.getResultJson());
        }
        assertEquals(6, node.get("count").asInt());
        assertEquals(3.5, node.get("median").asDouble(), 0);
    }

    @Test
    void unknownAlgorithmIsAnInBandError() {
        AnalysisResponse r = engine.stub.analyze(req("meen", 1, 2).build());
        assertFalse(r.getSuccess());
        assertEquals("r-meen", r.getRequestId());
        assertEquals(ErrorCode.UNKNOWN_ALGORITHM, r.getErrorCode());
        assertTrue(r.getErrorMessage().contains("unknown algorithm 'meen'"), r.getErrorMessage());
        assertTrue(r.getErrorMessage().contains("mean"), r.getErrorMessage());
    }

    @Test
    void badInputsNameTheField() {
        record Case(AnalysisRequest request, String expected) {
        }
        List<Case> cases = List.of(
                new Case(req("mean").build(), "mean needs at least 1 data point, got no data"),
                new Case(req("skewness", 1, 2).build(), "skewness needs at least 3 data points"),
                new Case(req("percentile", 1, 2, 3).putParams("percentile", "abc").build(), "param 'percentile'"),
                new Case(req("kmeans", 1, 2, 3).putParams("k", "two").build(), "param 'k' of kmeans must be an integer"),
                new Case(req("mean", 1, 2, 3).addShape(4).build(), "shape [4] does not match data with 3 values"),
                new Case(req("kmeans", 1, 2, 3, 4).putParams("k", "2").addShape(3).addShape(2).build(),
                        "shape [3, 2] needs 6 values but data has 4"),
                new Case(req("kmeans", 1, 2).putParams("k", "2").addShape(-1).addShape(-2).build(), "shape [-1, -2]"),
                new Case(req("mean", 1, 2, 3, 4).addShape(2).addShape(2).build(), "mean takes a 1-D series"),
                new Case(req("mean", 1, Double.NaN, 3).build(), "data[1] is NaN"),
                new Case(req("mean", 1, Double.POSITIVE_INFINITY).build(), "data[1] is Infinity"),
                new Case(req("mean", 1, 2).putParams("nan_policy", "drop").build(), "param 'nan_policy'"),
                new Case(req("linear_regression", 1, 2, 3).addTarget(1).build(), "target has 1 values but data has 3 rows"));
        for (Case c : cases) {
            AnalysisResponse r = engine.stub.analyze(c.request());
            assertFalse(r.getSuccess(), c.expected());
            assertEquals(ErrorCode.INVALID_ARGUMENT, r.getErrorCode(), r.getErrorMessage());
            assertTrue(r.getErrorMessage().contains(c.expected()),
                    "expected '" + c.expected() + "' in '" + r.getErrorMessage() + "'");
        }
    }

    @Test
    void nanPolicyOmitDropsNonFiniteValues() {
        AnalysisResponse r = engine.stub.analyze(req("mean", 1, Double.NaN, 3, Double.NEGATIVE_INFINITY)
                .putParams("nan_policy", "omit").build());
        assertTrue(r.getSuccess(), r.getErrorMessage());
        assertEquals("2.0", r.getResultJson());
        assertEquals("2", r.getMetadata().getStatsMap().get("omitted_non_finite"));
    }

    @Test
    void pythonOnlyAlgorithmWithoutPythonIsAClearError() {
        AnalysisResponse r = engine.stub.analyze(req("kmeans", 1, 2, 3).putParams("k", "2")
                .setOptions(AnalysisOptions.newBuilder().setPreferRust(true).setAllowPython(false)).build());
        assertFalse(r.getSuccess());
        assertEquals(ErrorCode.UNAVAILABLE, r.getErrorCode());
        assertTrue(r.getErrorMessage().contains("allow_python is false"), r.getErrorMessage());

        AnalysisResponse r2 = engine.stub.analyze(req("kmeans", 1, 2, 3).putParams("k", "2").build());
        assertFalse(r2.getSuccess());
        assertEquals(ErrorCode.UNAVAILABLE, r2.getErrorCode());
        assertTrue(r2.getErrorMessage().contains("workers = 0"), r2.getErrorMessage());
    }

    @Test
    void supportedAlgorithmsComeFromTheRegistry() {
        List<AlgorithmInfo> algos = engine.stub.getSupportedAlgorithms(Empty.getDefaultInstance()).getAlgorithmsList();
        assertEquals(29, algos.size());
        AlgorithmInfo mean = algos.stream().filter(a -> a.getName().equals("mean")).findFirst().orElseThrow();
        assertEquals(List.of("native", "python"), mean.getImplementationsList());
        AlgorithmInfo kmeans = algos.stream().filter(a -> a.getName().equals("kmeans")).findFirst().orElseThrow();
        assertEquals(List.of("python"), kmeans.getImplementationsList());
        // k defaults to 3, as in the earlier engine
        assertEquals(List.of(), kmeans.getRequiredParamsList());
        assertTrue(kmeans.getOptionalParamsList().containsAll(List.of("k", "max_iter", "random_state")));
    }

    @Test
    void healthCheckReportsVersionAndCapabilities() {
        HealthCheckResponse h = engine.stub.healthCheck(HealthCheckRequest.getDefaultInstance());
        assertTrue(h.getHealthy());
        assertFalse(h.getVersion().isEmpty());
        assertEquals("17", h.getCapabilitiesMap().get("native_algorithms"));
    }

    @Test
    void batchStreamsOneResponsePerItemAndAFailingItemDoesNotFailTheStream() {
        BatchAnalysisRequest.Builder b = BatchAnalysisRequest.newBuilder().setBatchId("b1");
        for (int i = 0; i < 50; i++) {
            b.addRequests(req(i % 10 == 3 ? "nope" : "mean", i, i + 1, i + 2).setRequestId("item-" + i));
        }
        Iterator<AnalysisResponse> it = engine.stub.batchAnalyze(b.build());
        Set<String> ids = new HashSet<>();
        int failures = 0;
        while (it.hasNext()) {
            AnalysisResponse r = it.next();
            assertTrue(ids.add(r.getRequestId()), "duplicate " + r.getRequestId());
            int i = Integer.parseInt(r.getRequestId().substring(5));
            if (i % 10 == 3) {
                assertFalse(r.getSuccess());
                assertEquals(ErrorCode.UNKNOWN_ALGORITHM, r.getErrorCode());
                failures++;
            } else {
                assertTrue(r.getSuccess(), r.getErrorMessage());
                assertEquals(Double.toString(i + 1.0), r.getResultJson());
            }
        }
        assertEquals(50, ids.size());
        assertEquals(5, failures);
    }

    @Test
    void batchOverTheLimitIsRejected() throws Exception {
        try (TestEngine small = new TestEngine(Map.of("max_batch_size", "3"), null)) {
            BatchAnalysisRequest.Builder b = BatchAnalysisRequest.newBuilder().setBatchId("big");
            IntStream.range(0, 4).forEach(i -> b.addRequests(req("mean", 1)));
            StatusRuntimeException e = assertThrows(StatusRuntimeException.class,
                    () -> small.stub.batchAnalyze(b.build()).hasNext());
            assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode());
            assertTrue(e.getStatus().getDescription().contains("limit is 3"));
        }
    }

    @Test
    void expiredDeadlineIsDeadlineExceeded() {
        StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> engine.stub
                .withDeadlineAfter(1, TimeUnit.NANOSECONDS).analyze(req("mean", 1, 2).build()));
        assertEquals(Status.Code.DEADLINE_EXCEEDED, e.getStatus().getCode());
    }

    @Test
    void largeRequestEndToEnd() {
        AnalysisRequest.Builder b = AnalysisRequest.newBuilder().setRequestId("big").setAlgorithm("mean");
        for (int i = 0; i < 1_000_000; i++) {
            b.addData(i);
        }
        AnalysisResponse r = engine.stub.analyze(b.build());
        assertTrue(r.getSuccess(), r.getErrorMessage());
        assertEquals(499999.5, Double.parseDouble(r.getResultJson()), 0);
    }

    @Test
    void streamIngestAnalysesChunks() throws Exception {
        CompletableFuture<AnalysisResponse> done = new CompletableFuture<>();
        StreamObserver<StreamChunk> in = AnalyticsEngineGrpc.newStub(engine.channel).analyzeStream(
                new StreamObserver<>() {
                    public void onNext(AnalysisResponse v) {
                        done.complete(v);
                    }

                    public void onError(Throwable t) {
                        done.completeExceptionally(t);
                    }

                    public void onCompleted() {
                    }
                });
        in.onNext(StreamChunk.newBuilder().setRequestId("s1").setAlgorithm("mean").addData(1).addData(2).build());
        in.onNext(StreamChunk.newBuilder().addData(3).addData(4).build());
        in.onCompleted();
        AnalysisResponse r = done.get(10, TimeUnit.SECONDS);
        assertTrue(r.getSuccess(), r.getErrorMessage());
        assertEquals("2.5", r.getResultJson());
    }

    // ------------------------------------------------------------ HTTP/1.1 on the gRPC port

    @Test
    void healthAndMetricsOverHttp1OnTheSamePort() throws Exception {
        String health = engine.get("/health");
        assertTrue(health.startsWith("HTTP/1.1 200 OK"), health);
        assertTrue(health.contains("application/json"), health);
        assertTrue(health.contains("\"status\":\"ok\""), health);
        assertTrue(health.contains("\"uptime_s\""), health);

        engine.stub.analyze(req("median", 3, 1, 2).build());
        String metrics = engine.get("/metrics");
        assertTrue(metrics.startsWith("HTTP/1.1 200 OK"), metrics.substring(0, Math.min(200, metrics.length())));
        assertTrue(metrics.contains("analytics_requests_total{"), "no request counter");
        assertTrue(metrics.contains("algorithm=\"median\""), "no median series");
        assertTrue(metrics.contains("analytics_request_duration_seconds_bucket"), "no latency histogram");
        assertTrue(metrics.contains("analytics_requests_inflight"), "no in-flight gauge");
        assertTrue(metrics.contains("jvm_memory_used_bytes"), "no JVM metrics");
        var rss = java.util.regex.Pattern.compile("(?m)^process_resident_memory_bytes\\{[^}]*\\} (\\S+)$").matcher(metrics);
        assertTrue(rss.find(), "no process_resident_memory_bytes");
        double rssBytes = Double.parseDouble(rss.group(1));
        assertTrue(rssBytes > 10e6 && rssBytes < 64e9, "engine RSS " + rssBytes);
        // the network buffers' memory outside the heap (the allocator gRPC uses), README "Health and metrics"
        var netty = java.util.regex.Pattern.compile(
                "(?m)^analytics_netty_memory_used_bytes\\{[^}]*memory_type=\"direct\"[^}]*pool=\"grpc\"[^}]*\\} (\\S+)$")
                .matcher(metrics);
        assertTrue(netty.find(), "no analytics_netty_memory_used_bytes for gRPC's direct memory");
        assertTrue(Double.parseDouble(netty.group(1)) >= 0, netty.group());

        assertTrue(engine.get("/nope").startsWith("HTTP/1.1 404"));
        assertTrue(engine.http("POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").startsWith("HTTP/1.1 405"));
        // gRPC still works on the same port after HTTP/1 traffic
        assertEquals("2.0", engine.stub.analyze(req("median", 3, 1, 2).build()).getResultJson());
    }

    @Test
    void garbageAndHalfOpenConnectionsDoNotHurtTheServer() throws Exception {
        for (String junk : List.of("\u0016\u0003\u0001\u0002\u0000\u0001\u0000\u01fc\u0003\u0003", "hello\r\n\r\n",
                "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\ngarbage-after-preface", "\u0000\u0000\u0000\u0000")) {
            try (Socket s = new Socket("127.0.0.1", engine.server.port())) {
                s.setSoTimeout(5000);
                OutputStream out = s.getOutputStream();
                out.write(junk.getBytes(StandardCharsets.ISO_8859_1));
                out.flush();
                s.shutdownOutput();
                s.getInputStream().readAllBytes();
            } catch (java.net.SocketException e) {
                // reset by the server is an acceptable answer to garbage
            }
        }
        Socket halfOpen = new Socket("127.0.0.1", engine.server.port()); // connects, never sends
        try {
            assertEquals("3.0", engine.stub.analyze(req("max", 1, 3, 2).build()).getResultJson());
            assertTrue(engine.get("/health").startsWith("HTTP/1.1 200"));
        } finally {
            halfOpen.close();
        }
    }

    @Test
    void serverReflectionListsTheService() throws Exception {
        CompletableFuture<List<String>> names = new CompletableFuture<>();
        StreamObserver<ServerReflectionRequest> in = ServerReflectionGrpc.newStub(engine.channel).serverReflectionInfo(
                new StreamObserver<>() {
                    public void onNext(ServerReflectionResponse v) {
                        List<String> l = new ArrayList<>();
                        v.getListServicesResponse().getServiceList().forEach(s -> l.add(s.getName()));
                        names.complete(l);
                    }

                    public void onError(Throwable t) {
                        names.completeExceptionally(t);
                    }

                    public void onCompleted() {
                    }
                });
        in.onNext(ServerReflectionRequest.newBuilder().setListServices("").build());
        in.onCompleted();
        List<String> l = names.get(10, TimeUnit.SECONDS);
        assertTrue(l.contains("analytics.AnalyticsEngine"), l.toString());
        assertTrue(l.contains("grpc.health.v1.Health"), l.toString());
    }

    // ------------------------------------------------------------ Unix socket listener

    @Test
    void unixSocketListenerReplacesAStaleFileAndServes(@TempDir Path dir) throws Exception {
        Path sock = dir.resolve("engine.sock");
        Files.writeString(sock, "stale"); // left behind by a crashed run
        try (TestEngine e = new TestEngine(Map.of("socket_path", sock.toString()), null)) {
            assertEquals("rw-rw----", PosixFilePermissions.toString(Files.getPosixFilePermissions(sock)));
            EpollEventLoopGroup group = new EpollEventLoopGroup(1);
            ManagedChannel ch = NettyChannelBuilder.forAddress(new DomainSocketAddress(sock.toString()))
                    .eventLoopGroup(group).channelType(EpollDomainSocketChannel.class).usePlaintext().build();
            try {
                AnalysisResponse r = AnalyticsEngineGrpc.newBlockingStub(ch).analyze(req("min", 4, 2, 9).build());
                assertEquals("2.0", r.getResultJson());
            } finally {
                ch.shutdownNow();
                group.shutdownGracefully(0, 1, TimeUnit.SECONDS);
            }
        }
        assertFalse(Files.exists(sock), "socket file removed on shutdown");
    }

    // ------------------------------------------------------------ bearer token

    @Test
    void bearerTokenIsRequiredWhenConfigured() throws Exception {
        try (TestEngine e = new TestEngine(Map.of("auth_token", "s3cret-token"), null)) {
            StatusRuntimeException ex = assertThrows(StatusRuntimeException.class,
                    () -> e.stub.analyze(req("mean", 1).build()));
            assertEquals(Status.Code.UNAUTHENTICATED, ex.getStatus().getCode());
            Metadata wrong = new Metadata();
            wrong.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer nope");
            ex = assertThrows(StatusRuntimeException.class, () -> e.stub
                    .withInterceptors(MetadataUtils.newAttachHeadersInterceptor(wrong)).analyze(req("mean", 1).build()));
            assertEquals(Status.Code.UNAUTHENTICATED, ex.getStatus().getCode());
            Metadata right = new Metadata();
            right.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer s3cret-token");
            assertEquals("1.0", e.stub.withInterceptors(MetadataUtils.newAttachHeadersInterceptor(right))
                    .analyze(req("mean", 1).build()).getResultJson());
            assertTrue(e.get("/metrics").startsWith("HTTP/1.1 401"));
            assertTrue(e.http("GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret-token\r\n\r\n")
                    .startsWith("HTTP/1.1 200"));
            assertTrue(e.get("/health").startsWith("HTTP/1.1 200"), "health stays open");
        }
    }
}
