package analytics.engine.server;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import analytics.engine.config.EngineConfig;
import analytics.engine.dispatch.ResultJson;
import analytics.engine.proto.AnalysisOptions;
import analytics.engine.proto.AnalysisRequest;
import analytics.engine.proto.AnalysisResponse;
import analytics.engine.proto.AnalyticsEngineGrpc;
import analytics.engine.proto.ErrorCode;
import analytics.engine.proto.StreamChunk;
import analytics.engine.stats.streaming.StreamingQuantiles;
import com.fasterxml.jackson.databind.JsonNode;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.StreamObserver;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** AnalyzeStream through a real engine: streamed answers equal the one-shot Analyze answers. */
class StreamIngestTest {

    private static TestEngine engine;

    @BeforeAll
    static void start() throws Exception {
        StreamingQuantiles.seedSketchRandom(42);
        engine = new TestEngine(Map.of("stream_exact_max_points", "100000", "stream_sketch_k", "2048",
                "stream_max_points", "50000"), null);
    }

    @AfterAll
    static void stop() throws Exception {
        engine.close();
    }

    static double[] data(int n, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        double[] x = new double[n];
        double prev = 0;
        for (int i = 0; i < n; i++) {
            prev = 0.5 * prev - Math.log(1 - r.nextDouble());
            x[i] = 100 + prev;
        }
        return x;
    }

    /** Sends header + data in chunks of {@code chunk} values; returns the answer (or the gRPC error). */
    static AnalysisResponse stream(String alg, Map<String, String> params, double[] x, int chunk) throws Exception {
        return stream(StreamChunk.newBuilder().setRequestId("rq-" + alg).setAlgorithm(alg).putAllParams(params)
                .setOptions(AnalysisOptions.newBuilder().setPreferRust(true).setAllowPython(true)
                        .setIncludeMetadata(true).setTimeoutMs(30000)).build(), x, chunk);
    }

    static AnalysisResponse stream(StreamChunk header, double[] x, int chunk) throws Exception {
        return StreamIngestTestSupport.stream(engine, header, x, chunk);
    }

    static AnalysisResponse oneShot(String alg, Map<String, String> params, double[] x) {
        AnalysisRequest.Builder b = AnalysisRequest.newBuilder().setAlgorithm(alg).putAllParams(params);
        for (double v : x) {
            b.addData(v);
        }
        return engine.stub.analyze(b.build());
    }

    static void assertClose(double expected, double actual, String what) {
        assertTrue(Math.abs(actual - expected) <= 1e-12 * Math.abs(expected), what + ": " + expected + " vs " + actual);
    }

    @Test
    void everyStreamableStatisticMatchesAnalyze() throws Exception {
        double[] x = data(60_001, 1);
        for (String alg : List.of("mean", "std", "variance", "min", "max", "range", "skewness", "kurtosis",
                "correlation", "median", "q1", "q3", "iqr")) {
            AnalysisResponse s = stream(alg, Map.of(), x, 4999);
            assertTrue(s.getSuccess(), alg + ": " + s.getErrorMessage());
            assertEquals("rq-" + alg, s.getRequestId());
            assertEquals("native", s.getMetadata().getImplementation());
            assertEquals(60_001, s.getMetadata().getDataSize());
            AnalysisResponse o = oneShot(alg, Map.of(), x);
            assertClose(Double.parseDouble(o.getResultJson()), Double.parseDouble(s.getResultJson()), alg);
        }
        AnalysisResponse p = stream("percentile", Map.of("percentile", "97.5"), x, 1000);
        assertEquals(oneShot("percentile", Map.of("percentile", "97.5"), x).getResultJson(), p.getResultJson());
        assertEquals("exact", p.getMetadata().getStatsOrThrow("quantile_method"));
        assertEquals("60001", stream("count", Map.of(), x, 7000).getResultJson());

        JsonNode ss = ResultJson.mapper().readTree(stream("summary", Map.of(), x, 3333).getResultJson());
        JsonNode os = ResultJson.mapper().readTree(oneShot("summary", Map.of(), x).getResultJson());
        for (String key : List.of("count", "median", "q25", "q75", "min", "max")) {
            assertEquals(os.get(key), ss.get(key), key);
        }
        for (String key : List.of("mean", "std", "variance", "range", "autocorr", "skewness", "kurtosis")) {
            assertClose(os.get(key).asDouble(), ss.get(key).asDouble(), "summary " + key);
        }
        assertEquals("exact", ss.get("quantile_method").asText());
    }

    @Test
    void beyondTheExactBudgetTheSummaryReportsKllAndItsRankError() throws Exception {
        double[] x = data(250_000, 2);
        double[] sorted = x.clone();
        Arrays.sort(sorted);
        AnalysisResponse r = stream("summary", Map.of(), x, 20_000);
        assertTrue(r.getSuccess(), r.getErrorMessage());
        JsonNode s = ResultJson.mapper().readTree(r.getResultJson());
        assertEquals("kll", s.get("quantile_method").asText());
        double eps = s.get("rank_error").asDouble();
        assertEquals(StreamingQuantiles.rankErrorFor(2048), eps, 1e-15);
        double median = s.get("median").asDouble();
        double rank = (double) Arrays.stream(sorted).filter(v -> v <= median).count() / sorted.length;
        assertTrue(Math.abs(rank - 0.5) <= eps, "median rank " + rank + " eps " + eps);
        assertEquals(250_000, s.get("count").asLong());
        assertEquals("kll", r.getMetadata().getStatsOrThrow("quantile_method"));

        AnalysisResponse p = stream("percentile", Map.of("percentile", "90"), x, 20_000);
        double v = Double.parseDouble(p.getResultJson()); // a bare number, as the v7 contract says
        double pr = (double) Arrays.stream(sorted).filter(y -> y <= v).count() / sorted.length;
        assertTrue(Math.abs(pr - 0.9) <= eps, "p90 rank " + pr);
        assertEquals(Double.toString(eps), p.getMetadata().getStatsOrThrow("rank_error"));
    }

    @Test
    void wholeSeriesAlgorithmsAreGatheredUpToTheLimitAndRefusedBeyond() throws Exception {
        double[] x = new double[40_000];
        for (int i = 0; i < x.length; i++) {
            x[i] = i % 7;
        }
        AnalysisResponse m = stream("mode", Map.of(), x, 10_000);
        assertTrue(m.getSuccess(), m.getErrorMessage());
        assertEquals(oneShot("mode", Map.of(), x).getResultJson(), m.getResultJson());

        AnalysisResponse big = stream("mode", Map.of(), new double[60_000], 10_000);
        assertFalse(big.getSuccess());
        assertEquals(ErrorCode.INVALID_ARGUMENT, big.getErrorCode());
        assertTrue(big.getErrorMessage().contains("more than 50000 data points (60000 so far; setting "
                + "stream_max_points = 50000)"), big.getErrorMessage());
        // the engine is fine afterwards
        assertEquals("3.0", stream("max", Map.of(), new double[] {1, 3, 2}, 1).getResultJson());
    }

    @Test
    void rejectionsAreImmediateAndClear() throws Exception {
        double[] withNan = data(30_000, 3);
        withNan[12_345] = Double.NaN;
        AnalysisResponse r = stream("mean", Map.of(), withNan, 1000);
        assertFalse(r.getSuccess());
        assertEquals(ErrorCode.INVALID_ARGUMENT, r.getErrorCode());
        assertTrue(r.getErrorMessage().contains("data[12345] is NaN"), r.getErrorMessage());
        assertEquals(14, Integer.parseInt(r.getMetadata().getStatsOrThrow("stream_chunks")),
                "answered at the chunk holding the NaN (header + 13th data chunk)");

        AnalysisResponse omit = stream("mean", Map.of("nan_policy", "omit"), withNan, 1000);
        assertTrue(omit.getSuccess(), omit.getErrorMessage());
        assertEquals("1", omit.getMetadata().getStatsOrThrow("omitted_non_finite"));

        AnalysisResponse u = stream("meen", Map.of(), new double[] {1}, 1);
        assertEquals(ErrorCode.UNKNOWN_ALGORITHM, u.getErrorCode());
        assertTrue(u.getErrorMessage().contains("supported: mean"), u.getErrorMessage());

        AnalysisResponse py = stream("kmeans", Map.of("k", "2"), new double[] {1, 2}, 1);
        assertEquals(ErrorCode.UNAVAILABLE, py.getErrorCode());
        assertTrue(py.getErrorMessage().contains("workers = 0"), py.getErrorMessage());

        AnalysisResponse few = stream("kurtosis", Map.of(), new double[] {1, 2, 3}, 2);
        assertEquals(ErrorCode.INVALID_ARGUMENT, few.getErrorCode());
        assertTrue(few.getErrorMessage().contains("needs at least 4 data points"), few.getErrorMessage());

        AnalysisResponse pct = stream("percentile", Map.of("percentile", "x"), new double[] {1}, 1);
        assertTrue(pct.getErrorMessage().contains("'percentile'"), pct.getErrorMessage());

        // a later chunk may not switch the algorithm
        CompletableFuture<AnalysisResponse> done = new CompletableFuture<>();
        StreamObserver<StreamChunk> in = AnalyticsEngineGrpc.newStub(engine.channel).analyzeStream(observer(done));
        in.onNext(StreamChunk.newBuilder().setAlgorithm("mean").addData(1).build());
        in.onNext(StreamChunk.newBuilder().setAlgorithm("max").addData(2).build());
        in.onCompleted();
        AnalysisResponse sw = done.get(10, TimeUnit.SECONDS);
        assertTrue(sw.getErrorMessage().contains("only the first chunk sets it"), sw.getErrorMessage());
        assertFalse(sw.getRequestId().isEmpty(), "a request id is generated when the client sends none");

        // an empty stream is a gRPC error (there is no request to answer)
        CompletableFuture<AnalysisResponse> empty = new CompletableFuture<>();
        AnalyticsEngineGrpc.newStub(engine.channel).analyzeStream(observer(empty)).onCompleted();
        try {
            empty.get(10, TimeUnit.SECONDS);
            throw new AssertionError("empty stream answered");
        } catch (ExecutionException e) {
            assertEquals(Status.Code.INVALID_ARGUMENT, ((StatusRuntimeException) e.getCause()).getStatus().getCode());
        }
        String metrics = engine.get("/metrics");
        assertTrue(metrics.contains("algorithm=\"mean\",implementation=\"native\",outcome=\"INVALID_ARGUMENT\""),
                "stream outcomes are counted");
    }

    @Test
    void cancelledAndFailedStreamsReturnTheirExactQuantileMemory() throws Exception {
        CompletableFuture<AnalysisResponse> done = new CompletableFuture<>();
        StreamObserver<StreamChunk> in = AnalyticsEngineGrpc.newStub(engine.channel).analyzeStream(observer(done));
        StreamChunk.Builder c = StreamChunk.newBuilder().setAlgorithm("median");
        for (int i = 0; i < 50_000; i++) {
            c.addData(i);
        }
        in.onNext(c.build());
        TestEngineAwait.until("memory reserved", () -> reserved() > 0);
        in.onError(new RuntimeException("client gives up")); // cancels the call
        TestEngineAwait.until("memory returned after a cancel", () -> reserved() == 0);

        double[] x = data(40_000, 9);
        x[39_999] = Double.NaN;
        assertFalse(stream("q3", Map.of(), x, 10_000).getSuccess());
        assertEquals(0, reserved(), "memory returned after a rejected stream");
        assertTrue(stream("q3", Map.of(), data(40_000, 9), 10_000).getSuccess());
        assertEquals(0, reserved(), "memory returned after a finished stream");
    }

    private static double reserved() {
        try {
            for (String line : engine.get("/metrics").split("\n")) {
                if (line.startsWith("analytics_stream_exact_reserved_bytes{")) {
                    return Double.parseDouble(line.substring(line.lastIndexOf(' ') + 1));
                }
            }
        } catch (java.io.IOException e) {
            throw new RuntimeException(e);
        }
        throw new AssertionError("no analytics_stream_exact_reserved_bytes in /metrics");
    }

    /** Polls a condition with a deadline (no fixed sleeps). */
    static final class TestEngineAwait {
        static void until(String what, java.util.function.BooleanSupplier cond) throws InterruptedException {
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
            while (!cond.getAsBoolean()) {
                if (System.nanoTime() > deadline) {
                    throw new AssertionError("timed out waiting for: " + what);
                }
                Thread.onSpinWait();
                Thread.sleep(5); // poll interval
            }
        }
    }

    private static StreamObserver<AnalysisResponse> observer(CompletableFuture<AnalysisResponse> done) {
        return new StreamObserver<>() {
            public void onNext(AnalysisResponse v) {
                done.complete(v);
            }

            public void onError(Throwable t) {
                done.completeExceptionally(t);
            }

            public void onCompleted() {
            }
        };
    }

    @Test
    void streamSettingsAreValidated() throws Exception {
        EngineConfig d = EngineConfig.load(null, null, Map.of(), Map.of());
        assertEquals(d.maxDataPoints(), d.streamMaxPoints(), "stream_max_points defaults to max_data_points");
        assertEquals(4_000_000L, d.streamExactMaxPoints());
        assertEquals(4096, d.streamSketchK());
        EngineConfig e = EngineConfig.load(null, null, Map.of("ANALYTICS_STREAM_EXACT_MAX_POINTS", "10"), Map.of());
        assertEquals(10L, e.streamExactMaxPoints());
        for (Map<String, String> bad : List.of(Map.of("stream_max_points", "30000000"),
                Map.of("stream_max_points", "-1"), Map.of("stream_sketch_k", "4"),
                Map.of("stream_exact_max_points", "many"))) {
            EngineConfig.ConfigException ex = org.junit.jupiter.api.Assertions.assertThrows(
                    EngineConfig.ConfigException.class, () -> EngineConfig.load(null, null, Map.of(), bad));
            assertTrue(ex.getMessage().contains(bad.keySet().iterator().next()), ex.getMessage());
        }
    }

    @Test
    void concurrentStreamsAreIndependent() throws Exception {
        List<CompletableFuture<AnalysisResponse>> all = new ArrayList<>();
        for (int s = 0; s < 6; s++) {
            double[] x = data(20_000, 10 + s);
            all.add(CompletableFuture.supplyAsync(() -> {
                try {
                    return stream("variance", Map.of(), x, 999);
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
            }));
        }
        for (int s = 0; s < 6; s++) {
            AnalysisResponse r = all.get(s).get(60, TimeUnit.SECONDS);
            assertClose(Double.parseDouble(oneShot("variance", Map.of(), data(20_000, 10 + s)).getResultJson()),
                    Double.parseDouble(r.getResultJson()), "stream " + s);
        }
    }
}
