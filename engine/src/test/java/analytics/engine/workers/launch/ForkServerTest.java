package analytics.engine.workers.launch;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import analytics.engine.api.AnalysisInput;
import analytics.engine.api.PythonBackend.PythonResult;
import analytics.engine.workers.PythonWorkerPool;
import analytics.engine.workers.WorkerPoolConfig;
import analytics.engine.workers.WorkerTestSupport;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Issue 11: workers forked from a warm template, with real Python processes. */
class ForkServerTest {

    private static final ObjectMapper JSON = new ObjectMapper();
    private final List<PythonWorkerPool> pools = new ArrayList<>();

    @AfterEach
    void closePools() {
        pools.forEach(PythonWorkerPool::close);
    }

    private static WorkerPoolConfig config(String pythonPath) {
        WorkerPoolConfig d = WorkerPoolConfig.defaults(WorkerTestSupport.python());
        return d.withWorkers(2)
                .withTestMode(true)
                .withStartMode(WorkerStartMode.FORK_SERVER)
                .withExtraEnv(Map.of("PYTHONPATH", pythonPath))
                .withRestart(new WorkerPoolConfig.Restart(Duration.ofMillis(100), Duration.ofSeconds(2), 5))
                .withTimeouts(d.timeouts().withStartup(Duration.ofSeconds(60))
                        .withPing(Duration.ofSeconds(2), Duration.ofSeconds(5)).withKillGrace(Duration.ofSeconds(1)));
    }

    private static String pkg() {
        return WorkerTestSupport.repoRoot().resolve("py-worker").toString();
    }

    private PythonWorkerPool started(WorkerPoolConfig cfg) throws InterruptedException {
        PythonWorkerPool pool = new PythonWorkerPool(cfg, new SimpleMeterRegistry());
        pools.add(pool);
        pool.start();
        assertTrue(pool.awaitReady(Duration.ofSeconds(90), true), "workers not ready: " + pool.status());
        return pool;
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> startStatus(PythonWorkerPool pool) {
        return (Map<String, Object>) pool.status().get("worker_start");
    }

    private static long templatePid(PythonWorkerPool pool) {
        return ((Number) startStatus(pool).get("template_pid")).longValue();
    }

    @SuppressWarnings("unchecked")
    private static List<Long> workerPids(PythonWorkerPool pool) {
        List<Long> out = new ArrayList<>();
        for (Map<String, Object> w : (List<Map<String, Object>>) pool.status().get("worker_list")) {
            if ("ready".equals(w.get("state")) || "busy".equals(w.get("state"))) {
                out.add(((Number) w.get("pid")).longValue());
            }
        }
        return out;
    }

    private static long parentOf(long pid) throws IOException {
        String stat = Files.readString(Path.of("/proc/" + pid + "/stat"));
        return Long.parseLong(stat.substring(stat.lastIndexOf(')') + 2).split(" ")[1]);
    }

    private static boolean running(long pid) {
        try {
            String stat = Files.readString(Path.of("/proc/" + pid + "/stat"));
            return stat.charAt(stat.lastIndexOf(')') + 2) != 'Z';
        } catch (IOException e) {
            return false;
        }
    }

    private static void await(String what, Duration timeout, BooleanSupplier cond) {
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

    private static AnalysisInput series(String id, String algorithm, Map<String, String> params, double... data) {
        return new AnalysisInput(id, algorithm, data, data.length, 1, false, null, List.of(), params);
    }

    private static AnalysisInput kmeansInput(String id) {
        Random rnd = new Random(7);
        int n = 600;
        double[] data = new double[n * 2];
        for (int i = 0; i < data.length; i++) {
            data[i] = rnd.nextGaussian() + (i % 4 < 2 ? 0 : 5);
        }
        return new AnalysisInput(id, "kmeans", data, n, 2, true, null, List.of(), Map.of("k", "3"));
    }

    @Test
    void workersAreForkedFromOneSingleThreadedTemplate() throws Exception {
        PythonWorkerPool pool = started(config(pkg()));
        Map<String, Object> st = startStatus(pool);
        assertEquals("fork-server", st.get("mode"), st.toString());
        long tpl = templatePid(pool);
        assertTrue(tpl > 0, st.toString());
        for (long w : workerPids(pool)) {
            assertEquals(tpl, parentOf(w), "worker " + w + " is not a child of the template");
            assertTrue(Files.readString(Path.of("/proc/" + w + "/cmdline")).startsWith("analytics-worker["),
                    "process title of a forked worker");
        }
        // native threads included: the template must be single-threaded whenever it forks (it refuses otherwise)
        try (var tasks = Files.list(Path.of("/proc/" + tpl + "/task"))) {
            assertEquals(1, tasks.count(), "threads in the template");
        }
    }

    @Test
    void killedWorkerIsReplacedByAWarmForkThatServes() throws Exception {
        PythonWorkerPool pool = started(config(pkg()));
        long tpl = templatePid(pool);
        List<Long> before = workerPids(pool);
        long victim = before.get(0);
        new ProcessBuilder("kill", "-9", Long.toString(victim)).start().waitFor();
        await("a replacement for worker " + victim, Duration.ofSeconds(30), () -> {
            List<Long> now = workerPids(pool);
            return now.size() == 2 && !now.contains(victim);
        });
        for (long w : workerPids(pool)) {
            assertEquals(tpl, parentOf(w), "replacement not forked from the template");
        }
        for (int i = 0; i < 4; i++) { // both workers (FIFO pool) answer a ML request
            PythonResult r = pool.submit(kmeansInput("k-" + i), 30_000).get(40, TimeUnit.SECONDS);
            assertTrue(r.resultJson().startsWith("{"), r.resultJson());
        }
    }

    @Test
    void killedTemplateLosesNoRequestAndComesBack() throws Exception {
        PythonWorkerPool pool = started(config(pkg()));
        long tpl = templatePid(pool);
        List<CompletableFuture<PythonResult>> inFlight = new ArrayList<>();
        for (int i = 0; i < 6; i++) {
            inFlight.add(pool.submit(series("s-" + i, "_test_sleep", Map.of("seconds", "0.3")), 30_000));
        }
        new ProcessBuilder("kill", "-9", Long.toString(tpl)).start().waitFor();
        for (int i = 0; i < 6; i++) {
            inFlight.add(pool.submit(series("m-" + i, "mean", Map.of(), 1, 2, 3), 30_000));
        }
        for (CompletableFuture<PythonResult> f : inFlight) {
            f.get(60, TimeUnit.SECONDS); // throws if any request failed
        }
        await("a new template", Duration.ofSeconds(60), () -> {
            long now = templatePid(pool);
            return now > 0 && now != tpl;
        });
        long fresh = templatePid(pool);
        long victim = workerPids(pool).get(0);
        new ProcessBuilder("kill", "-9", Long.toString(victim)).start().waitFor();
        await("a worker forked from the new template", Duration.ofSeconds(30), () -> workerPids(pool).stream()
                .anyMatch(p -> {
                    try {
                        return p != victim && parentOf(p) == fresh;
                    } catch (IOException e) {
                        return false;
                    }
                }));
        assertEquals("2.0", pool.submit(series("after", "mean", Map.of(), 1, 2, 3), 10_000)
                .get(20, TimeUnit.SECONDS).resultJson());
    }

    @Test
    void templateThatCannotImportFallsBackToSpawnVisibleInHealth(@TempDir Path tmp) throws Exception {
        Path broken = tmp.resolve("sklearn");
        Files.createDirectories(broken);
        Files.writeString(broken.resolve("__init__.py"), "raise ImportError('simulated broken scikit-learn')\n");
        PythonWorkerPool pool = started(config(tmp + ":" + pkg()));
        Map<String, Object> st = startStatus(pool);
        assertEquals("spawn", st.get("mode"), st.toString());
        assertTrue(String.valueOf(st.get("fallback_reason")).contains("simulated broken scikit-learn"), st.toString());
        for (long w : workerPids(pool)) {
            assertEquals(ProcessHandle.current().pid(), parentOf(w), "fallback workers are spawned by the engine");
        }
        assertEquals("2.0", pool.submit(series("m", "mean", Map.of(), 1, 3), 10_000).get(20, TimeUnit.SECONDS).resultJson());
    }

    @Test
    void forkedWorkersHaveTheirOwnRandomStreams() throws Exception {
        PythonWorkerPool pool = started(config(pkg()));
        Map<Long, JsonNode> byPid = new java.util.HashMap<>();
        for (int i = 0; i < 20 && byPid.size() < 2; i++) {
            JsonNode r = JSON.readTree(pool.submit(series("r-" + i, "_test_random", Map.of()), 10_000)
                    .get(20, TimeUnit.SECONDS).resultJson());
            byPid.putIfAbsent(r.get("pid").asLong(), r);
        }
        assertEquals(2, byPid.size(), "both workers answered");
        List<JsonNode> rs = new ArrayList<>(byPid.values());
        assertNotEquals(rs.get(0).get("random"), rs.get(1).get("random"), "random streams are equal");
        assertNotEquals(rs.get(0).get("numpy"), rs.get(1).get("numpy"), "numpy streams are equal");
    }

    @Test
    void rollingReloadStartsANewTemplateFirstAndFailsNoRequest() throws Exception {
        PythonWorkerPool pool = started(config(pkg()));
        long oldTpl = templatePid(pool);
        Set<Long> oldWorkers = new HashSet<>(workerPids(pool));
        List<CompletableFuture<PythonResult>> inFlight = new ArrayList<>();
        CompletableFuture<Void> reload = pool.reloadAsync();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(90);
        int i = 0;
        while (!reload.isDone() && System.nanoTime() < deadline) {
            inFlight.add(pool.submit(series("rl-" + i++, "_test_sleep", Map.of("seconds", "0.05")), 30_000));
            Thread.sleep(20); // request pacing for the load, not synchronisation
        }
        reload.get(90, TimeUnit.SECONDS);
        for (CompletableFuture<PythonResult> f : inFlight) {
            f.get(60, TimeUnit.SECONDS);
        }
        long newTpl = templatePid(pool);
        assertTrue(newTpl > 0 && newTpl != oldTpl, "reload started a new template: " + startStatus(pool));
        for (long w : workerPids(pool)) {
            assertTrue(!oldWorkers.contains(w), "worker " + w + " was not replaced");
            assertEquals(newTpl, parentOf(w), "replacement not forked from the new template");
        }
        await("the old template to exit after its workers", Duration.ofSeconds(30), () -> !running(oldTpl));
    }

    @Test
    void nothingIsLeftAfterTheEngineStops() throws Exception {
        PythonWorkerPool pool = started(config(pkg()));
        long tpl = templatePid(pool);
        List<Long> workers = workerPids(pool);
        pool.close();
        for (long p : workers) {
            await("worker " + p + " to exit", Duration.ofSeconds(15), () -> !running(p));
        }
        await("template " + tpl + " to exit", Duration.ofSeconds(15), () -> !running(tpl));
    }
}
