package analytics.engine.workers;

import analytics.engine.api.AnalysisInput;
import analytics.engine.api.PythonBackend.PythonResult;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

/**
 * Measurements for the worker pool (not part of the test suite): replacement time of a killed worker, Python-path
 * overhead of a tiny request, CPU-bound throughput with 1 vs 2 workers.
 * Run: java -cp ... analytics.engine.workers.WorkerBench PYTHON PY_WORKER_DIR
 */
public final class WorkerBench {

    public static void main(String[] args) throws Exception {
        Path python = Path.of(args[0]);
        Map<String, String> env = Map.of("PYTHONPATH", args[1]);
        WorkerPoolConfig base = WorkerPoolConfig.defaults(python).withExtraEnv(env).withTestMode(true);

        try (PythonWorkerPool pool = new PythonWorkerPool(base.withWorkers(1), new SimpleMeterRegistry())) {
            pool.start();
            pool.awaitReady(Duration.ofSeconds(60), true);
            double[] tiny = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
            for (int i = 0; i < 300; i++) { // warm-up
                pool.submit(new AnalysisInput("w" + i, "mean", tiny, 10, 1, false, null, List.of(), Map.of()), 5000).get();
            }
            int n = 2000;
            long[] engine = new long[n];
            long[] wire = new long[n];
            for (int i = 0; i < n; i++) {
                long t0 = System.nanoTime();
                PythonResult r = pool.submit(new AnalysisInput("t" + i, "mean", tiny, 10, 1, false, null, List.of(), Map.of()), 5000).get();
                long total = (System.nanoTime() - t0) / 1000;
                engine[i] = total - r.computeMicros();
                wire[i] = r.roundTripMicros() - r.computeMicros();
            }
            System.out.printf("tiny request (mean of 10), 1 worker, %d sequential: submit->complete minus compute_us: p50 %d us, p90 %d us, p99 %d us; socket round trip minus compute_us: p50 %d us%n",
                    n, pct(engine, 50), pct(engine, 90), pct(engine, 99), pct(wire, 50));
        }

        try (PythonWorkerPool pool = new PythonWorkerPool(base.withWorkers(2), new SimpleMeterRegistry())) {
            pool.start();
            pool.awaitReady(Duration.ofSeconds(60), true);
            long[] ms = new long[5];
            for (int k = 0; k < ms.length; k++) {
                long victim = WorkerTestSupport.pidOf(pool, 0);
                long t0 = System.nanoTime();
                new ProcessBuilder("kill", "-9", Long.toString(victim)).start().waitFor();
                while (!(WorkerTestSupport.pidOf(pool, 0) != victim && WorkerTestSupport.pidOf(pool, 0) > 0
                        && WorkerTestSupport.count(pool, "ready") == 2)) {
                    Thread.sleep(2);
                }
                ms[k] = (System.nanoTime() - t0) / 1_000_000;
                // a worker up for 2 s counts as healthy again (otherwise repeated kills count as a crash loop
                // and the restart backoff doubles)
                Thread.sleep(2500);
            }
            Arrays.sort(ms);
            System.out.printf("kill -9 -> replacement ready (first restart of a healthy slot: no backoff): %s ms, median %d ms%n",
                    Arrays.toString(ms), ms[ms.length / 2]);
        }

        Random rnd = new Random(42);
        int rows = 5000;
        int cols = 10;
        double[] x = new double[rows * cols];
        double[] y = new double[rows];
        for (int i = 0; i < rows; i++) {
            double s = 0;
            for (int j = 0; j < cols; j++) {
                x[i * cols + j] = rnd.nextGaussian();
                s += (j + 1) * x[i * cols + j];
            }
            y[i] = s + rnd.nextGaussian();
        }
        int jobs = Integer.parseInt(args.length > 2 ? args[2] : "8");
        String trees = args.length > 3 ? args[3] : "20";
        for (int workers : new int[] {1, 2}) {
            try (PythonWorkerPool pool = new PythonWorkerPool(base.withWorkers(workers)
                    .withLimits(new WorkerPoolConfig.Limits(100, 0))
                    .withTimeouts(base.timeouts().withBorrowWait(Duration.ofMinutes(10))), new SimpleMeterRegistry())) {
                pool.start();
                pool.awaitReady(Duration.ofSeconds(60), true);
                Map<String, String> params = Map.of("n_estimators", trees, "random_state", "42");
                for (int w = 0; w < workers; w++) { // warm-up: sklearn import
                    pool.submit(new AnalysisInput("warm", "random_forest", x, rows, cols, true, y, List.of(), params), 600_000).get();
                }
                long t0 = System.nanoTime();
                List<CompletableFuture<PythonResult>> fs = new ArrayList<>();
                for (int i = 0; i < jobs; i++) {
                    fs.add(pool.submit(new AnalysisInput("rf" + i, "random_forest", x, rows, cols, true, y, List.of(), params), 600_000));
                }
                long compute = 0;
                for (CompletableFuture<PythonResult> f : fs) {
                    compute += f.get(10, TimeUnit.MINUTES).computeMicros();
                }
                double secs = (System.nanoTime() - t0) / 1e9;
                System.out.printf("random_forest %dx%d, %s trees, %d jobs, %d worker(s): %.2f s wall, %.2f req/s, mean compute %.0f ms%n",
                        rows, cols, trees, jobs, workers, secs, jobs / secs, compute / 1000.0 / jobs);
            }
        }
    }

    private static long pct(long[] v, int p) {
        long[] c = v.clone();
        Arrays.sort(c);
        return c[Math.min(c.length - 1, (int) Math.ceil(p / 100.0 * c.length) - 1)];
    }
}
