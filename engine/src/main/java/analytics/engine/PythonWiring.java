package analytics.engine;

import analytics.engine.config.EngineConfig;
import analytics.engine.dispatch.AlgorithmSpec;
import analytics.engine.api.AnalysisInput;
import analytics.engine.dispatch.PythonCatalogue;
import analytics.engine.metrics.EngineMetrics;
import analytics.engine.metrics.WorkerSlotMetrics;
import analytics.engine.api.PythonBackend;
import analytics.engine.workers.PythonWorkerPool;
import analytics.engine.workers.WorkerPoolConfig;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.util.TreeMap;
import org.slf4j.LoggerFactory;

/** Builds the Python worker pool from the engine configuration, and runs --test-python. */
final class PythonWiring {

    private PythonWiring() {
    }

    static WorkerPoolConfig poolConfig(EngineConfig cfg, String python, int workers) {
        Path runtime = null;
        if (!cfg.runtimeDir().isEmpty()) {
            runtime = Path.of(cfg.runtimeDir());
        } else if (System.getenv("RUNTIME_DIRECTORY") != null && !System.getenv("RUNTIME_DIRECTORY").isBlank()) {
            // systemd's RuntimeDirectory= (may list several, colon-separated; the first is ours)
            runtime = Path.of(System.getenv("RUNTIME_DIRECTORY").split(":")[0]);
        }
        WorkerPoolConfig d = WorkerPoolConfig.defaults(Path.of(python));
        return d.withWorkers(workers)
                .withRuntimeDir(runtime)
                .withTestMode(cfg.testMode())
                .withStartMode(cfg.workerStart())
                .withRecycling(new WorkerPoolConfig.Recycling(cfg.workerMaxRequests(), cfg.workerMaxRssBytes()))
                .withLimits(new WorkerPoolConfig.Limits(cfg.maxConcurrent(), cfg.rateLimit()))
                .withTimeouts(d.timeouts().withStartup(Duration.ofSeconds(cfg.workerStartupTimeoutS()))
                        .withBorrowWait(Duration.ofMillis(cfg.queueWaitMs())));
    }

    /**
     * Starts the pool (non-blocking) or returns null when workers = 0. {@code loops} (may be null): the event loops
     * to serve the worker connections on, shared with the gRPC server (see {@code EngineServer.newSharedLoops}).
     */
    static PythonBackend start(EngineConfig cfg, String python, EngineMetrics metrics,
                               io.netty.channel.EventLoopGroup loops) {
        if (cfg.workers() == 0) {
            return null;
        }
        checkPython(python);
        PythonWorkerPool pool = new PythonWorkerPool(poolConfig(cfg, python, cfg.workers()), metrics.registry(),
                cfg.shmThresholdBytes());
        if (loops != null) {
            pool.useEventLoops(loops);
        }
        WorkerSlotMetrics.bind(metrics.registry(), cfg.workers(), pool, PythonWorkerPool::status); // per-worker meters (monitoring)
        pool.start();
        whenReady(pool, () -> checkCatalogue(pool, cfg.testMode()));
        return pool;
    }

    /**
     * The engine validates Python requests from the catalogue it was built with ({@link PythonCatalogue});
     * the workers run the installed worker package. Says so loudly when the first worker's hello declares
     * the algorithms differently (a package upgraded without the engine, or the other way round).
     */
    static List<String> checkCatalogue(PythonWorkerPool pool, boolean testMode) {
        ObjectMapper json = new ObjectMapper();
        Map<String, AlgorithmSpec> announced = new TreeMap<>();
        pool.algorithmInfo().forEach((name, entry) -> {
            AlgorithmSpec s = PythonCatalogue.entry(name, json.valueToTree(entry));
            if (!s.category().equals("statistics")) { // the statistics are declared by the engine
                announced.put(name, s);
            }
        });
        List<AlgorithmSpec> expected = PythonCatalogue.load().stream()
                .filter(s -> testMode || !PythonCatalogue.testOnly(s)).toList();
        List<String> diff = PythonCatalogue.differences(expected, announced);
        if (!diff.isEmpty()) {
            LoggerFactory.getLogger(PythonWiring.class).error("the installed worker package declares its algorithms "
                    + "differently from this engine's catalogue ({}); requests are validated by the engine's "
                    + "copy: install the worker package of the same build (scripts/build.sh)", String.join("; ", diff));
        }
        return diff;
    }

    private static void checkPython(String python) {
        if (python.contains("/") && !Files.isExecutable(Path.of(python))) {
            throw new IllegalStateException("Python executable " + python + " not found: run ./scripts/build.sh "
                    + "(it creates py-worker/.venv) or set ANALYTICS_PYTHON / --python; workers = 0 runs without Python");
        }
    }

    /**
     * Runs {@code action} once the first worker is ready (at once without Python), on a background thread,
     * after one pass of the idle-worker check ({@link PythonWorkerPool#checkIdleWorkersNow}). That check first
     * runs one ping interval after start otherwise, ~9 s after ready, and its first use loads classes and has
     * C2 compile the class loader: in some runs C2's arenas held 18-26 MiB for ~5 s then. Run here, that cost
     * comes before the start-up idle trim that {@code action} starts (bench/README.md, "Ninth pass").
     */
    static void whenReady(PythonBackend py, Runnable action) {
        if (!(py instanceof PythonWorkerPool pool)) {
            action.run();
            return;
        }
        Thread t = new Thread(() -> {
            try {
                while (!pool.awaitReady(Duration.ofSeconds(30))) {
                    LoggerFactory.getLogger(PythonWiring.class).warn("no Python worker ready yet: {}",
                            pool.status().get("workers"));
                }
                int checked = pool.checkIdleWorkersNow();
                LoggerFactory.getLogger(PythonWiring.class).debug("start-up idle-worker check: {} idle worker(s) pinged", checked);
                action.run();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }, "await-workers");
        t.setDaemon(true);
        t.start();
    }

    /** --test-python: one worker, one kmeans request, result printed; exit 0 only if it worked. */
    static int testPython(EngineConfig cfg, String python, PrintStream out, PrintStream err) {
        out.println("python: " + python);
        try {
            checkPython(python);
        } catch (IllegalStateException e) {
            err.println("analytics-server: --test-python: " + e.getMessage());
            return 1;
        }
        long t0 = System.nanoTime();
        try (PythonWorkerPool pool = new PythonWorkerPool(poolConfig(cfg, python, 1), new EngineMetrics().registry())) {
            pool.start();
            if (!pool.awaitReady(Duration.ofSeconds(cfg.workerStartupTimeoutS()))) {
                err.println("analytics-server: --test-python: the worker did not start: " + pool.status().get("workers")
                        + " (see the worker[1] lines above; missing modules → pip install -r requirements.txt)");
                return 1;
            }
            out.printf("worker ready in %d ms%n", (System.nanoTime() - t0) / 1_000_000);
            double[] data = {1.0, 1.1, 0.9, 10.0, 10.2, 9.8};
            AnalysisInput in = new AnalysisInput("test-python", "kmeans", data, data.length, 1, false, null, List.of(),
                    Map.of("k", "2"));
            PythonBackend.PythonResult r = pool.submit(in, 30_000).get(35, TimeUnit.SECONDS);
            out.println("kmeans k=2 on " + java.util.Arrays.toString(data) + ":");
            out.println(r.resultJson());
            out.printf("round trip %d us (in worker %d us)%n", r.roundTripMicros(), r.computeMicros());
            out.println("OK: the Python path works");
            return 0;
        } catch (Exception e) {
            Throwable c = e instanceof java.util.concurrent.ExecutionException && e.getCause() != null ? e.getCause() : e;
            err.println("analytics-server: --test-python failed: " + c.getMessage());
            return 1;
        }
    }
}
