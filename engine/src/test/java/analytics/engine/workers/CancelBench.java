package analytics.engine.workers;

import analytics.engine.api.AnalysisInput;
import analytics.engine.api.PythonBackend;
import analytics.engine.api.Cancellation;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;

/**
 * Measurement for issue 16 (not part of the test suite): the time from a cancellation to the worker being free
 * again, and to the next request's answer on that worker, with one worker (so the next request must use it).
 * <ul>
 *   <li>kmeans over 30 000 points (k=8, n_init=300) cancelled after 1 s — the case (10 runs);</li>
 *   <li>_test_sleep cancelled 20 ms after it started (200 runs);</li>
 *   <li>for comparison, a worker that cannot stop (_test_hang uncancellable): killed after the 250 ms wait and
 *   replaced (5 runs; "next" includes the replacement's start-up).</li>
 * </ul>
 * "free" is seen by polling the pool's status every 50 µs. Run (from the repo root):
 * <pre>
 * mvn -q -B -o test-compile
 * mvn -q -o -f engine/pom.xml dependency:build-classpath -Dmdep.outputFile=/tmp/cp.txt
 * java -cp engine/target/classes:engine/target/test-classes:$(cat /tmp/cp.txt) \
 *     analytics.engine.workers.CancelBench py-worker/.venv/bin/python py-worker
 * </pre>
 */
public final class CancelBench {

    public static void main(String[] args) throws Exception {
        WorkerPoolConfig cfg = WorkerPoolConfig.defaults(Path.of(args[0])).withWorkers(1)
                .withExtraEnv(Map.of("PYTHONPATH", Path.of(args[1]).toAbsolutePath().toString())).withTestMode(true);
        Random r = new Random(16);
        double[] points = new double[60_000];
        for (int i = 0; i < points.length; i++) {
            points[i] = r.nextGaussian();
        }
        AnalysisInput kmeans = new AnalysisInput("km", "kmeans", points, 30_000, 2, true, null, List.of(),
                Map.of("k", "8", "n_init", "300", "max_iter", "1000"));
        AnalysisInput sleep = new AnalysisInput("sl", "_test_sleep", new double[0], 0, 1, false, null, List.of(),
                Map.of("seconds", "600"));
        AnalysisInput hang = new AnalysisInput("hg", "_test_hang", new double[] {1}, 1, 1, false, null, List.of(),
                Map.of("uncancellable", "true"));
        try (PythonWorkerPool pool = new PythonWorkerPool(cfg, new SimpleMeterRegistry())) {
            pool.start();
            if (!pool.awaitReady(Duration.ofSeconds(60), true)) {
                throw new IllegalStateException("worker did not start: " + pool.status());
            }
            run(pool, "kmeans 30000x2, cancelled after 1 s", kmeans, 1000, 10);
            run(pool, "_test_sleep, cancelled after 20 ms", sleep, 20, 200);
            run(pool, "uncancellable _test_hang (kill + replace)", hang, 20, 5);
        }
    }

    private static void run(PythonWorkerPool pool, String what, AnalysisInput in, long afterMs, int n) throws Exception {
        AnalysisInput tiny = new AnalysisInput("next", "mean", new double[] {1, 2, 3}, 3, 1, false, null, List.of(), Map.of());
        pool.submit(tiny, 60_000).get(); // warm
        double[] free = new double[n];
        double[] next = new double[n];
        for (int i = 0; i < n; i++) {
            Cancellation c = new Cancellation();
            CompletableFuture<?> f = pool.submit(in, 600_000, c, PythonBackend.Listener.NONE);
            while (busy(pool) == 0) {
                LockSupport.parkNanos(50_000);
            }
            Thread.sleep(afterMs); // let it compute (a measurement, not a synchronisation)
            long t0 = System.nanoTime();
            c.cancel(Cancellation.Kind.CANCELLED, "bench");
            while (busy(pool) != 0) {
                LockSupport.parkNanos(50_000);
            }
            free[i] = (System.nanoTime() - t0) / 1e6;
            pool.submit(tiny, 60_000).get(60, TimeUnit.SECONDS);
            next[i] = (System.nanoTime() - t0) / 1e6;
            f.handle((x, e) -> null).get(10, TimeUnit.SECONDS);
        }
        System.out.printf("%-45s n=%-4d cancel->free  p50 %6.1f  p95 %6.1f  max %6.1f ms | cancel->next answered  "
                + "p50 %6.1f  p95 %6.1f  max %6.1f ms%n", what, n, pct(free, 50), pct(free, 95), pct(free, 100),
                pct(next, 50), pct(next, 95), pct(next, 100));
    }

    @SuppressWarnings("unchecked")
    private static int busy(PythonWorkerPool pool) {
        return ((Map<String, Integer>) pool.status().get("workers")).get("busy");
    }

    private static double pct(double[] v, int p) {
        double[] s = v.clone();
        Arrays.sort(s);
        return s[Math.min(s.length - 1, (int) Math.ceil(p / 100.0 * s.length) - 1)];
    }
}
