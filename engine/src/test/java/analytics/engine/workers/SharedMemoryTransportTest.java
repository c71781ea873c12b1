package analytics.engine.workers;

import static analytics.engine.workers.WorkerTestSupport.input;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import analytics.engine.api.AnalysisException;
import analytics.engine.api.AnalysisInput;
import analytics.engine.proto.ErrorCode;
import analytics.engine.api.PythonBackend.PythonResult;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The shared-memory hand-off (PROTOCOL.md, data_file) against real workers: same results as msgpack bytes, and
 * no file left in the runtime directory after success, error, worker crash and timeout.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class SharedMemoryTransportTest {

    private final List<PythonWorkerPool> pools = new ArrayList<>();
    private final List<SimpleMeterRegistry> registries = new ArrayList<>();

    @AfterEach
    void closePools() {
        for (PythonWorkerPool p : pools) {
            Path dir = p.runtimeDir();
            p.close();
            if (dir != null && Files.exists(dir)) {
                try (Stream<Path> s = Files.list(dir)) {
                    assertEquals(List.of(), s.toList(), "left in the runtime dir after close");
                } catch (IOException e) {
                    throw new AssertionError(e);
                }
            }
        }
    }

    private PythonWorkerPool started(int workers, long threshold) throws InterruptedException {
        SimpleMeterRegistry meters = new SimpleMeterRegistry();
        registries.add(meters);
        PythonWorkerPool pool = new PythonWorkerPool(WorkerTestSupport.config().withWorkers(workers), meters, threshold);
        pools.add(pool);
        pool.start();
        assertTrue(pool.awaitReady(Duration.ofSeconds(30), true), "workers did not start: " + pool.status());
        return pool;
    }

    private double shmCount(PythonWorkerPool pool) {
        return registries.get(pools.indexOf(pool)).get("analytics.python.shm.requests").counter().count();
    }

    /** Everything in the runtime dir except the socket. */
    private static List<String> leftovers(PythonWorkerPool pool) {
        try (Stream<Path> s = Files.list(pool.runtimeDir())) {
            return s.map(p -> p.getFileName().toString()).filter(n -> !n.equals("workers.sock")).sorted().toList();
        } catch (IOException e) {
            throw new AssertionError(e);
        }
    }

    private static void awaitClean(PythonWorkerPool pool) {
        WorkerTestSupport.await("runtime dir without data files (has " + leftovers(pool) + ")", Duration.ofSeconds(10),
                () -> leftovers(pool).isEmpty());
    }

    private static AnalysisException failure(CompletableFuture<?> f) throws Exception {
        try {
            f.get(30, TimeUnit.SECONDS);
        } catch (ExecutionException e) {
            if (e.getCause() instanceof AnalysisException ae) {
                return ae;
            }
            fail("unexpected failure type", e.getCause());
        }
        fail("expected a failure");
        return null;
    }

    private static double[] random(long seed, int n) {
        Random r = new Random(seed);
        double[] d = new double[n];
        for (int i = 0; i < n; i++) {
            d[i] = r.nextGaussian() * 10 + 3;
        }
        return d;
    }

    @Test
    void resultsAreIdenticalToTheMsgpackPathAndNoFileRemains() throws Exception {
        PythonWorkerPool shm = started(1, 1 << 20);
        PythonWorkerPool bytes = started(1, 0);
        double[] big = random(42, 2_000_000); // 16 MB
        double[] x = random(7, 400_000);
        double[] y = new double[200_000];
        for (int i = 0; i < y.length; i++) {
            y[i] = 2 * x[2 * i] - 0.5 * x[2 * i + 1] + 1 + (i % 7) * 1e-3;
        }
        List<AnalysisInput> cases = List.of(
                input("echo", "_test_echo", Map.of(), big),
                WorkerTestSupport.matrix("echo-m", "_test_echo", Map.of(), big, 1_000_000, 2),
                input("summary", "summary", Map.of(), big),
                new AnalysisInput("lr", "linear_regression", x, 200_000, 2, true, y, List.of(), Map.of()));
        for (AnalysisInput in : cases) {
            PythonResult a = shm.submit(in, 30_000).get(30, TimeUnit.SECONDS);
            PythonResult b = bytes.submit(in, 30_000).get(30, TimeUnit.SECONDS);
            assertEquals(b.resultJson(), a.resultJson(), in.algorithm());
        }
        // the echo proves the values arrived exactly: n and the sum over 2 M points
        PythonResult echo = shm.submit(cases.get(0), 30_000).get(30, TimeUnit.SECONDS);
        double sum = 0;
        for (double v : big) {
            sum += v;
        }
        com.fasterxml.jackson.databind.JsonNode j = new com.fasterxml.jackson.databind.ObjectMapper().readTree(echo.resultJson());
        assertEquals(2_000_000, j.get("n").asLong(), echo.resultJson());
        assertEquals(2_000_000, j.get("shape").get(0).asLong(), echo.resultJson());
        // numpy sums pairwise, Java sequentially: equal to ~1e-12 relative (a wrong or shifted value is far off)
        assertEquals(sum, j.get("sum").asDouble(), Math.abs(sum) * 1e-12);
        assertEquals(5.0, shmCount(shm), "every big request went through a data file");
        assertEquals(0.0, shmCount(bytes), "threshold 0 = always msgpack");
        // below the threshold: msgpack bytes as before
        shm.submit(input("small", "_test_echo", Map.of(), 1, 2, 3), 5000).get(10, TimeUnit.SECONDS);
        assertEquals(5.0, shmCount(shm));
        awaitClean(shm);
        awaitClean(bytes);
    }

    @Test
    void thousandRequestsLeaveNoFile() throws Exception {
        PythonWorkerPool pool = started(2, 64); // 16 doubles = 128 bytes: just above a low threshold
        int n = 1000;
        int window = 16;
        long expectedN = 0;
        List<CompletableFuture<PythonResult>> inFlight = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            double[] d = new double[16];
            for (int j = 0; j < d.length; j++) {
                d[j] = i + j;
            }
            // every 10th request fails in the worker (nan_policy) and must clean up too
            Map<String, String> params = i % 10 == 0 ? Map.of("nan_policy", "bogus") : Map.of();
            inFlight.add(pool.submit(input("k-" + i, i % 10 == 0 ? "mean" : "_test_echo", params, d), 10_000));
            if (inFlight.size() == window || i == n - 1) {
                for (CompletableFuture<PythonResult> f : inFlight) {
                    try {
                        PythonResult r = f.get(10, TimeUnit.SECONDS);
                        assertTrue(r.resultJson().contains("\"n\":16,"), r.resultJson());
                        expectedN++;
                    } catch (ExecutionException e) {
                        assertTrue(e.getCause() instanceof AnalysisException ae && ae.code() == ErrorCode.INVALID_ARGUMENT,
                                String.valueOf(e.getCause()));
                    }
                }
                inFlight.clear();
            }
        }
        assertEquals(900, expectedN);
        assertEquals(1000.0, shmCount(pool));
        awaitClean(pool);
    }

    @Test
    void workerCrashAndTimeoutLeaveNoFile() throws Exception {
        PythonWorkerPool pool = started(2, 1024);
        double[] d = random(3, 100_000);
        AnalysisException crash = failure(pool.submit(input("cr", "_test_crash", Map.of("code", "5"), d), 20_000));
        assertEquals(ErrorCode.WORKER_FAILED, crash.code(), crash.getMessage());
        awaitClean(pool);

        WorkerTestSupport.await("replacements ready", Duration.ofSeconds(30), () -> WorkerTestSupport.count(pool, "ready") == 2);
        AnalysisException timeout = failure(pool.submit(input("hg", "_test_hang", Map.of(), d), 1000));
        assertEquals(ErrorCode.TIMEOUT, timeout.code(), timeout.getMessage());
        awaitClean(pool);

        // the pool still works through data files afterwards
        PythonResult r = pool.submit(input("after", "_test_echo", Map.of(), d), 20_000).get(30, TimeUnit.SECONDS);
        assertNotNull(r.resultJson());
        assertTrue(r.resultJson().contains("\"n\":100000,"), r.resultJson());
        assertTrue(shmCount(pool) >= 4, "crash (2 attempts), hang, echo went through files: " + shmCount(pool));
        awaitClean(pool);
    }

    @Test
    void staleFilesAreSweptOnStart(@org.junit.jupiter.api.io.TempDir Path tmp) throws Exception {
        Path rt = tmp.resolve("rt");
        Files.createDirectories(rt);
        Files.write(rt.resolve("arr-deadbeef-1.f64"), new byte[16]);
        Files.write(rt.resolve("keep.txt"), new byte[1]);
        SimpleMeterRegistry meters = new SimpleMeterRegistry();
        registries.add(meters);
        PythonWorkerPool pool = new PythonWorkerPool(WorkerTestSupport.config().withWorkers(1).withRuntimeDir(rt), meters, 64);
        pools.add(pool);
        pool.start();
        assertTrue(!Files.exists(rt.resolve("arr-deadbeef-1.f64")), "stale data file swept");
        assertTrue(Files.exists(rt.resolve("keep.txt")), "other files untouched");
        Files.delete(rt.resolve("keep.txt"));
        assertTrue(pool.awaitReady(Duration.ofSeconds(30), true));
    }

    @Test
    void helloFeaturesDecideTheTransport() {
        // a revision-1 worker sends no features: it only ever gets msgpack bytes (toFiles checks "data_file")
        assertEquals(java.util.Set.of(), helloFeatures(Map.of("type", "hello")));
        assertEquals(java.util.Set.of(), helloFeatures(Map.of("type", "hello", "features", "data_file")));
        assertEquals(java.util.Set.of("data_file", "x"),
                helloFeatures(Map.of("type", "hello", "features", List.of("data_file", 3L, "x"))));
    }

    private static java.util.Set<String> helloFeatures(Map<String, Object> frame) {
        return ((analytics.engine.workers.transport.WorkerMessage.Hello)
                analytics.engine.workers.transport.WorkerMessage.of(frame)).features();
    }

    @Test
    void summaryThroughTheServerWithPreferRustFalseIsIdenticalOnBothPaths() throws Exception {
        double[] big = random(11, 2_000_000);
        String[] json = new String[2];
        long[] thresholds = {PythonWorkerPool.DEFAULT_SHM_THRESHOLD_BYTES, 0};
        for (int k = 0; k < 2; k++) {
            PythonWorkerPool pool = started(1, thresholds[k]);
            try (analytics.engine.server.TestEngine engine = new analytics.engine.server.TestEngine(Map.of("workers", "1"), pool)) {
                analytics.engine.proto.AnalysisRequest.Builder b = analytics.engine.proto.AnalysisRequest.newBuilder()
                        .setRequestId("sum-" + k).setAlgorithm("summary")
                        .setOptions(analytics.engine.proto.AnalysisOptions.newBuilder().setPreferRust(false)
                                .setAllowPython(true).setTimeoutMs(30_000).setIncludeMetadata(true));
                for (double d : big) {
                    b.addData(d);
                }
                analytics.engine.proto.AnalysisResponse r = engine.stub.analyze(b.build());
                assertTrue(r.getSuccess(), r.getErrorMessage());
                assertEquals("python", r.getMetadata().getImplementation());
                json[k] = r.getResultJson();
            }
            assertEquals(k == 0 ? 1.0 : 0.0, shmCount(pool), "threshold " + thresholds[k]);
            awaitClean(pool);
        }
        assertEquals(json[1], json[0]);
        assertTrue(json[0].contains("2000000"), json[0]);
    }
}
