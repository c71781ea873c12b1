package analytics.engine.workers;

import static org.junit.jupiter.api.Assertions.fail;

import analytics.engine.api.AnalysisInput;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.function.BooleanSupplier;

/** Locates the real worker venv and builds pool configs for tests. Missing Python is a failure, never a skip. */
public final class WorkerTestSupport {

    private WorkerTestSupport() {
    }

    public static Path repoRoot() {
        String root = System.getProperty("analytics.repo.root");
        return root != null ? Path.of(root).toAbsolutePath().normalize() : Path.of("..").toAbsolutePath().normalize();
    }

    /** The workers' Python: -Danalytics.python, else py-worker/.venv (made by scripts/build.sh); missing = fail. */
    public static Path python() {
        String p = System.getProperty("analytics.python");
        Path py = p != null && !p.isBlank() ? Path.of(p) : repoRoot().resolve("py-worker/.venv/bin/python");
        if (!Files.isExecutable(py)) {
            fail("Python for the worker tests not found at " + py + ". Create it with: python3 -m venv py-worker/.venv && "
                    + "py-worker/.venv/bin/pip install -r py-worker/requirements.txt (or pass -Danalytics.python=...)");
        }
        return py;
    }

    /** Two workers, test algorithms on, short restart backoff, the worker package from the repo on PYTHONPATH. */
    public static WorkerPoolConfig config() {
        WorkerPoolConfig d = WorkerPoolConfig.defaults(python());
        return d.withWorkers(2)
                .withTestMode(true)
                .withExtraEnv(Map.of("PYTHONPATH", repoRoot().resolve("py-worker").toString()))
                .withRestart(new WorkerPoolConfig.Restart(Duration.ofMillis(100), Duration.ofSeconds(2), 5))
                .withTimeouts(d.timeouts().withStartup(Duration.ofSeconds(30))
                        .withPing(Duration.ofSeconds(2), Duration.ofSeconds(5)).withKillGrace(Duration.ofSeconds(1)));
    }

    static AnalysisInput input(String id, String algorithm, Map<String, String> params, double... data) {
        return new AnalysisInput(id, algorithm, data, data.length, 1, false, null, List.of(), params);
    }

    static AnalysisInput matrix(String id, String algorithm, Map<String, String> params, double[] data, int rows, int cols) {
        return new AnalysisInput(id, algorithm, data, rows, cols, true, null, List.of(), params);
    }

    /** Polls until the condition holds or the deadline passes. */
    public static void await(String what, Duration timeout, BooleanSupplier cond) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (!cond.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                fail("timed out after " + timeout.toMillis() + " ms waiting for: " + what);
            }
            try {
                Thread.sleep(10);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                fail("interrupted");
            }
        }
    }

    @SuppressWarnings("unchecked")
    public static List<Map<String, Object>> workerList(PythonWorkerPool pool) {
        return (List<Map<String, Object>>) pool.status().get("worker_list");
    }

    public static long pidOf(PythonWorkerPool pool, int slot) {
        for (Map<String, Object> w : workerList(pool)) {
            if (((Number) w.get("id")).intValue() == slot && !"retiring".equals(w.get("state"))) {
                return ((Number) w.get("pid")).longValue();
            }
        }
        return -1;
    }

    @SuppressWarnings("unchecked")
    public static int count(PythonWorkerPool pool, String state) {
        return ((Map<String, Integer>) pool.status().get("workers")).getOrDefault(state, 0);
    }
}
