package analytics.engine.server;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import analytics.engine.dispatch.ResultJson;
import analytics.engine.proto.AnalysisResponse;
import analytics.engine.proto.AnalyticsEngineGrpc;
import analytics.engine.proto.StreamChunk;
import analytics.engine.stats.NativeStatistics;
import com.fasterxml.jackson.databind.JsonNode;
import io.grpc.ManagedChannel;
import io.grpc.netty.NettyChannelBuilder;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import java.io.IOException;
import java.net.HttpURLConnection;
import java.net.ServerSocket;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * 10^7 points (system property {@code analytics.stream.points}) streamed in 64 Ki-value chunks into a
 * real engine process started with a small heap ({@code -Xmx}, property {@code analytics.stream.xmx},
 * default 128m — less than the 80 MB the series occupies plus any copy), with flow control. Checks the
 * answers against the one-shot kernels on the same series and the engine's peak RSS (VmHWM) against a
 * stated bound, and prints the throughput.
 */
class StreamScaleTest {

    static final int POINTS = Integer.getInteger("analytics.stream.points", 10_000_000);
    static final String XMX = System.getProperty("analytics.stream.xmx", "128m");
    /** Stated bound for the engine's peak resident memory while streaming (MiB). */
    static final long RSS_BOUND_MB = Long.getLong("analytics.stream.rss.bound.mb", 400);
    static final int CHUNK = Integer.getInteger("analytics.stream.chunk", 65_536);

    @Test
    void tenMillionPointsStreamInBoundedMemoryAndMatchTheOneShotResults() throws Exception {
        double[] x = new double[POINTS];
        SplittableRandom r = new SplittableRandom(2024);
        double prev = 0;
        for (int i = 0; i < POINTS; i++) {
            prev = 0.6 * prev - Math.log(1 - r.nextDouble());
            x[i] = 50 + prev;
        }
        int port;
        try (ServerSocket s = new ServerSocket(0)) {
            port = s.getLocalPort();
        }
        Path log = Files.createTempFile("stream-scale", ".log");
        ProcessBuilder pb = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-Xmx" + XMX, "-cp", System.getProperty("java.class.path"), "analytics.engine.Main",
                "--listen", "127.0.0.1:" + port, "--workers", "0")
                .redirectErrorStream(true).redirectOutput(log.toFile());
        pb.environment().put("ANALYTICS_TEST_MODE", "true");
        pb.environment().put("ANALYTICS_LOG", "warn");
        Process engine = pb.start();
        ManagedChannel ch = null;
        try {
            waitHealthy(port, engine, log);
            long rssIdle = vmKb(engine.pid(), "VmRSS:");
            ch = NettyChannelBuilder.forAddress("127.0.0.1", port).usePlaintext().build();

            long c0 = System.nanoTime();
            AnalysisResponse count = stream(ch, "count", Map.of(), x);
            double countSecs = (System.nanoTime() - c0) / 1e9;
            assertEquals(Long.toString(POINTS), count.getResultJson());
            long t0 = System.nanoTime();
            AnalysisResponse summary = stream(ch, "summary", Map.of(), x);
            double secs = (System.nanoTime() - t0) / 1e9;
            assertTrue(summary.getSuccess(), summary.getErrorMessage());
            AnalysisResponse p99 = stream(ch, "percentile", Map.of("percentile", "99"), x);
            assertTrue(p99.getSuccess(), p99.getErrorMessage());
            AnalysisResponse kurt = stream(ch, "kurtosis", Map.of(), x);
            assertTrue(kurt.getSuccess(), kurt.getErrorMessage());
            long hwm = vmKb(engine.pid(), "VmHWM:");

            // exact statistics: within 1e-12 of the one-shot kernels
            JsonNode s = ResultJson.mapper().readTree(summary.getResultJson());
            Map<?, ?> one = (Map<?, ?>) NativeStatistics.KERNELS.get("summary").compute(x, Map.of());
            assertEquals(((Number) one.get("count")).longValue(), s.get("count").asLong());
            for (String key : List.of("min", "max")) {
                assertEquals((Double) one.get(key), s.get(key).asDouble(), 0.0, key);
            }
            for (String key : List.of("mean", "std", "variance", "range", "autocorr", "skewness", "kurtosis")) {
                double e = (Double) one.get(key);
                double g = s.get(key).asDouble();
                assertTrue(Math.abs(g - e) <= 1e-12 * Math.abs(e), key + ": one-shot " + e + " streamed " + g);
            }
            double k1 = (Double) NativeStatistics.KERNELS.get("kurtosis").compute(x, Map.of());
            assertTrue(Math.abs(Double.parseDouble(kurt.getResultJson()) - k1) <= 1e-12 * Math.abs(k1));
            // quantiles: KLL (10^7 > stream_exact_max_points), within the reported rank error
            assertEquals("kll", s.get("quantile_method").asText());
            double eps = s.get("rank_error").asDouble();
            double[] sorted = x.clone();
            Arrays.sort(sorted);
            checkRank(sorted, 0.5, s.get("median").asDouble(), eps, "median");
            checkRank(sorted, 0.25, s.get("q25").asDouble(), eps, "q25");
            checkRank(sorted, 0.75, s.get("q75").asDouble(), eps, "q75");
            checkRank(sorted, 0.99, Double.parseDouble(p99.getResultJson()), eps, "p99");
            assertEquals("kll", p99.getMetadata().getStatsOrThrow("quantile_method"));

            System.out.printf("stream-scale: count (ingest only) %.1f M points/s; ", POINTS / countSecs / 1e6);
            System.out.printf("summary of %d points in %.2f s = %.1f M points/s (%.0f MB/s of doubles); "
                            + "engine -Xmx%s, RSS idle %d MiB, peak RSS (VmHWM) %d MiB; KLL rank error %.5f%n",
                    POINTS, secs, POINTS / secs / 1e6, POINTS * 8.0 / secs / 1e6, XMX, rssIdle / 1024, hwm / 1024,
                    eps);
            assertTrue(hwm / 1024 <= RSS_BOUND_MB, "engine peak RSS " + hwm / 1024 + " MiB exceeds the bound "
                    + RSS_BOUND_MB + " MiB");
            assertTrue(engine.isAlive(), "engine died: " + Files.readString(log));
        } finally {
            if (ch != null) {
                ch.shutdownNow();
            }
            engine.destroy();
            if (!engine.waitFor(20, TimeUnit.SECONDS)) {
                engine.destroyForcibly();
            }
            Files.deleteIfExists(log);
        }
    }

    static void checkRank(double[] sorted, double q, double v, double eps, String what) {
        int lo = countBelow(sorted, v, false);
        int hi = countBelow(sorted, v, true);
        double n = sorted.length;
        assertTrue(hi / n >= q - eps && lo / n <= q + eps, what + ": " + v + " has rank [" + lo / n + ", "
                + hi / n + "], wanted " + q + " +- " + eps);
    }

    /** Number of sorted values &lt; v (or &lt;= v when inclusive). */
    static int countBelow(double[] a, double v, boolean inclusive) {
        int lo = 0;
        int hi = a.length;
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (a[mid] < v || (inclusive && a[mid] == v)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        return lo;
    }

    /** Streams x with flow control (never more than the transport can take). */
    static AnalysisResponse stream(ManagedChannel ch, String alg, Map<String, String> params, double[] x)
            throws Exception {
        CompletableFuture<AnalysisResponse> done = new CompletableFuture<>();
        Semaphore ready = new Semaphore(0);
        List<ClientCallStreamObserver<StreamChunk>> holder = new ArrayList<>();
        AnalyticsEngineGrpc.newStub(ch).analyzeStream(new ClientResponseObserver<StreamChunk, AnalysisResponse>() {
            @Override
            public void beforeStart(ClientCallStreamObserver<StreamChunk> requestStream) {
                holder.add(requestStream);
                requestStream.setOnReadyHandler(ready::release);
            }

            @Override
            public void onNext(AnalysisResponse value) {
                done.complete(value);
            }

            @Override
            public void onError(Throwable t) {
                done.completeExceptionally(t);
                ready.release();
            }

            @Override
            public void onCompleted() {
                ready.release();
            }
        });
        ClientCallStreamObserver<StreamChunk> out = holder.get(0);
        out.onNext(StreamChunk.newBuilder().setRequestId("scale-" + alg).setAlgorithm(alg).putAllParams(params).build());
        for (int i = 0; i < x.length && !done.isDone(); i += CHUNK) {
            while (!out.isReady() && !done.isDone()) {
                ready.tryAcquire(1, TimeUnit.SECONDS);
            }
            StreamChunk.Builder c = StreamChunk.newBuilder();
            int end = Math.min(x.length, i + CHUNK);
            for (int j = i; j < end; j++) {
                c.addData(x[j]);
            }
            out.onNext(c.build());
        }
        out.onCompleted();
        return done.get(300, TimeUnit.SECONDS);
    }

    static long vmKb(long pid, String field) throws IOException {
        for (String line : Files.readAllLines(Path.of("/proc", Long.toString(pid), "status"))) {
            if (line.startsWith(field)) {
                return Long.parseLong(line.substring(field.length()).trim().split("\\s+")[0]);
            }
        }
        throw new IOException(field + " not in /proc/" + pid + "/status");
    }

    static void waitHealthy(int port, Process engine, Path log) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (System.nanoTime() < deadline) {
            if (!engine.isAlive()) {
                throw new AssertionError("engine exited: " + Files.readString(log));
            }
            try {
                HttpURLConnection c = (HttpURLConnection) URI.create("http://127.0.0.1:" + port + "/health").toURL()
                        .openConnection();
                c.setConnectTimeout(500);
                c.setReadTimeout(2000);
                if (c.getResponseCode() == 200) {
                    return;
                }
            } catch (IOException e) {
                // not up yet
            }
            engine.waitFor(100, TimeUnit.MILLISECONDS); // poll interval; returns early if the engine dies
        }
        throw new AssertionError("engine not healthy within 60 s: " + Files.readString(log));
    }
}
