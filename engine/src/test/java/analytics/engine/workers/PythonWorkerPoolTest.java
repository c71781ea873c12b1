package analytics.engine.workers;

import static analytics.engine.workers.WorkerTestSupport.await;
import static analytics.engine.workers.WorkerTestSupport.config;
import static analytics.engine.workers.WorkerTestSupport.count;
import static analytics.engine.workers.WorkerTestSupport.input;
import static analytics.engine.workers.WorkerTestSupport.pidOf;
import static analytics.engine.workers.WorkerTestSupport.workerList;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import analytics.engine.api.AnalysisException;
import analytics.engine.proto.ErrorCode;
import analytics.engine.api.PythonBackend.PythonResult;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** Supervision, pool and resilience against real Python workers (2 workers each). */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class PythonWorkerPoolTest {

    private final SimpleMeterRegistry meters = new SimpleMeterRegistry();
    private final List<PythonWorkerPool> pools = new ArrayList<>();

    @AfterEach
    void closePools() {
        for (PythonWorkerPool p : pools) {
            p.close();
        }
    }

    private PythonWorkerPool started(WorkerPoolConfig cfg) throws InterruptedException {
        PythonWorkerPool pool = new PythonWorkerPool(cfg, meters);
        pools.add(pool);
        pool.start();
        assertTrue(pool.awaitReady(Duration.ofSeconds(30), true), "workers did not start: " + pool.status());
        return pool;
    }

    /** The test config with these admission limits and this cap on the wait for a free worker. */
    private static WorkerPoolConfig limits(int maxConcurrent, int ratePerSecond, Duration borrowWait) {
        WorkerPoolConfig c = config();
        return c.withLimits(new WorkerPoolConfig.Limits(maxConcurrent, ratePerSecond))
                .withTimeouts(c.timeouts().withBorrowWait(borrowWait));
    }

    /** Idle workers pinged every 300 ms (RSS arrives quickly). */
    private static WorkerPoolConfig fastPing(WorkerPoolConfig c) {
        return c.withTimeouts(c.timeouts().withPing(Duration.ofMillis(300), c.timeouts().pingTimeout()));
    }

    private static AnalysisException failure(CompletableFuture<?> f) throws InterruptedException {
        try {
            f.get(30, TimeUnit.SECONDS);
        } catch (ExecutionException e) {
            if (e.getCause() instanceof AnalysisException ae) {
                return ae;
            }
            fail("unexpected failure type", e.getCause());
        } catch (java.util.concurrent.TimeoutException e) {
            fail("future never completed");
        }
        fail("expected a failure");
        return null;
    }

    static boolean running(long pid) {
        // a zombie (exited, not yet reaped) counts as gone
        try {
            String stat = Files.readString(Path.of("/proc/" + pid + "/stat"));
            char state = stat.charAt(stat.lastIndexOf(')') + 2);
            return state != 'Z' && state != 'X';
        } catch (java.io.IOException e) {
            return false;
        }
    }

    private static void kill9(long pid) throws Exception {
        assertTrue(pid > 1, "refusing to kill pid " + pid);
        Process k = new ProcessBuilder("kill", "-9", Long.toString(pid)).inheritIO().start();
        assertEquals(0, k.waitFor(), "kill -9 " + pid);
    }

    @Test
    void echoRoundTripCarriesExactDoubles() throws Exception {
        PythonWorkerPool pool = started(config());
        double[] data = {1.5, -2.25, 1e-300, 3.0e10, 0.1};
        PythonResult r = pool.submit(WorkerTestSupport.matrix("echo-1", "_test_echo", Map.of(), new double[] {1, 2, 3, 4, 5, 6}, 3, 2), 5000)
                .get(10, TimeUnit.SECONDS);
        assertEquals("{\"n\":6,\"sum\":21.0,\"shape\":[3,2]}", r.resultJson().replace(" ", ""));
        PythonResult mean = pool.submit(input("m-1", "mean", Map.of(), data), 5000).get(10, TimeUnit.SECONDS);
        double expected = (1.5 - 2.25 + 1e-300 + 3.0e10 + 0.1) / 5;
        assertEquals(expected, Double.parseDouble(mean.resultJson()), Math.ulp(expected) * 4);
        assertTrue(r.roundTripMicros() >= r.computeMicros());
        // algorithm errors come back with the worker's code and leave the worker in service
        AnalysisException unknown = failure(pool.submit(input("u-1", "no_such_algorithm", Map.of(), 1, 2), 5000));
        assertEquals(ErrorCode.UNKNOWN_ALGORITHM, unknown.code());
        AnalysisException bad = failure(pool.submit(input("b-1", "_test_sleep", Map.of("seconds", "abc")), 5000));
        assertEquals(ErrorCode.INVALID_ARGUMENT, bad.code());
        assertEquals(2, count(pool, "ready"));
        assertTrue(pool.algorithms().contains("mean"));
        assertEquals("CLOSED", pool.status().get("breaker"));
    }

    /**
     * The small-request toll (bench/README.md): a small successful answer is finished on the worker socket's
     * event loop, not handed to a completion thread. The continuation is registered right after submit, while
     * the worker sleeps 0.5 s, so it runs on the thread that completes the future.
     */
    @Test
    void smallAnswerIsFinishedOnTheSocketEventLoop() throws Exception {
        PythonWorkerPool pool = started(config());
        CompletableFuture<PythonResult> f = pool.submit(input("inline-1", "_test_sleep", Map.of("seconds", "0.5")), 10_000);
        CompletableFuture<String> thread = f.thenApply(r -> Thread.currentThread().getName());
        String name = thread.get(10, TimeUnit.SECONDS);
        assertTrue(name.startsWith("worker-sock-io"), "answered on " + name);
        assertEquals(2, count(pool, "ready"));
    }

    @Test
    void killedWorkerMidRequestIsRetriedAndReplaced() throws Exception {
        PythonWorkerPool pool = started(config());
        CompletableFuture<PythonResult> f = pool.submit(input("k-1", "_test_sleep", Map.of("seconds", "1.0")), 20_000);
        await("a worker to be busy", Duration.ofSeconds(5), () -> count(pool, "busy") == 1);
        int busySlot = -1;
        for (Map<String, Object> w : workerList(pool)) {
            if ("busy".equals(w.get("state"))) {
                busySlot = ((Number) w.get("id")).intValue();
            }
        }
        long victim = pidOf(pool, busySlot);
        long killedAt = System.nanoTime();
        kill9(victim);
        int slot = busySlot;
        await("the killed worker's slot to be ready with a new process", Duration.ofSeconds(20),
                () -> pidOf(pool, slot) != victim && pidOf(pool, slot) > 0
                        && List.of("ready", "busy").contains(workerList(pool).stream()
                        .filter(w -> ((Number) w.get("id")).intValue() == slot).findFirst().orElseThrow().get("state")));
        long replaceMs = (System.nanoTime() - killedAt) / 1_000_000;
        System.out.println("MEASURE replace_killed_worker_ms=" + replaceMs);
        PythonResult r = f.get(20, TimeUnit.SECONDS);
        assertEquals("{\"slept\":1.0}", r.resultJson().replace(" ", ""));
        await("the pool to be full again", Duration.ofSeconds(20), () -> count(pool, "ready") == 2);
        assertFalse(running(victim), "killed worker still running");
        assertTrue(meters.get("analytics.python.retries").counter().count() >= 1);
        assertTrue(meters.get("analytics.python.worker.restarts").counter().count() >= 1);
        assertEquals(1, ((Number) workerList(pool).get(slot).get("restarts")).intValue());
    }

    @Test
    void hangingRequestTimesOutAtDeadlineAndWorkerIsReplaced() throws Exception {
        PythonWorkerPool pool = started(config());
        long deadlineMs = 1500;
        long t0 = System.nanoTime();
        // uncancellable: like a hang inside C code, the worker cannot stop when asked, so it must be replaced
        CompletableFuture<PythonResult> hang = pool.submit(input("h-1", "_test_hang", Map.of("uncancellable", "true"), 1),
                deadlineMs);
        CompletableFuture<Long> failedAt = hang.handle((r, e) -> System.nanoTime());
        await("the hang to occupy a worker", Duration.ofSeconds(5), () -> count(pool, "busy") == 1);
        long hungPid = -1;
        for (Map<String, Object> w : workerList(pool)) {
            if ("busy".equals(w.get("state"))) {
                hungPid = ((Number) w.get("pid")).longValue();
            }
        }
        // meanwhile the other worker keeps serving
        for (int i = 0; i < 5; i++) {
            PythonResult r = pool.submit(input("ok-" + i, "_test_echo", Map.of(), i, 1), 5000).get(5, TimeUnit.SECONDS);
            assertTrue(r.resultJson().contains("\"n\":2") || r.resultJson().contains("\"n\": 2"), r.resultJson());
        }
        AnalysisException e = failure(hang);
        long elapsedMs = (failedAt.get() - t0) / 1_000_000;
        assertEquals(ErrorCode.TIMEOUT, e.code(), e.getMessage());
        assertTrue(Math.abs(elapsedMs - deadlineMs) <= 100, "answered after " + elapsedMs + " ms, deadline " + deadlineMs);
        assertTrue(e.getMessage().contains("_test_hang") && e.getMessage().contains("1500 ms"), e.getMessage());
        long pid = hungPid;
        await("the hung worker to be killed", Duration.ofSeconds(10), () -> !running(pid));
        await("the pool to be full again", Duration.ofSeconds(20), () -> count(pool, "ready") == 2);
        assertEquals(1.0, meters.get("analytics.python.timeouts").counter().count());
        PythonResult after = pool.submit(input("after", "_test_echo", Map.of(), 7), 5000).get(10, TimeUnit.SECONDS);
        assertNotNull(after.resultJson());
    }

    @Test
    void crashLoopOpensBreakerAndRecoversAfterFixAndReload(@TempDir Path tmp) throws Exception {
        Path marker = tmp.resolve("broken");
        Files.writeString(marker, "x");
        // sitecustomize runs at interpreter start-up: while the marker exists the worker dies before its hello
        Files.writeString(tmp.resolve("sitecustomize.py"), "import os, sys\n"
                + "if os.path.exists(" + pyString(marker.toString()) + "):\n"
                + "    sys.stderr.write('simulated start-up failure: bad deployment\\n')\n"
                + "    sys.stderr.flush()\n"
                + "    os._exit(7)\n");
        WorkerPoolConfig cfg = config()
                .withExtraEnv(Map.of("PYTHONPATH", tmp + ":" + WorkerTestSupport.repoRoot().resolve("py-worker")))
                .withRestart(new WorkerPoolConfig.Restart(Duration.ofMillis(20), Duration.ofMillis(100), 3))
                .withBreaker(new WorkerPoolConfig.Breaker(50f, 10, 4, Duration.ofSeconds(30)));
        PythonWorkerPool pool = new PythonWorkerPool(cfg, meters);
        pools.add(pool);
        pool.start();
        assertFalse(pool.awaitReady(Duration.ofSeconds(20), false), "a broken worker became ready");
        await("both slots down", Duration.ofSeconds(20), () -> count(pool, "down") == 2);
        assertFalse(pool.isAvailable());
        Map<String, Object> status = pool.status();
        assertEquals("OPEN", status.get("breaker"), status.toString());
        String lastFailure = String.valueOf(workerList(pool).get(0).get("last_failure"));
        assertTrue(lastFailure.contains("exited with status 7") && lastFailure.contains("simulated start-up failure"), lastFailure);

        AnalysisException e = failure(pool.submit(input("c-1", "mean", Map.of(), 1, 2), 5000));
        assertEquals(ErrorCode.UNAVAILABLE, e.code());
        assertTrue(e.getMessage().contains("circuit breaker open, retry in"), e.getMessage());
        assertTrue(e.getMessage().contains("exited with status 7"), e.getMessage());

        Files.delete(marker); // the fix
        pool.reloadAsync().get(60, TimeUnit.SECONDS);
        assertTrue(pool.awaitReady(Duration.ofSeconds(20), true), pool.status().toString());
        assertTrue(pool.isAvailable());
        PythonResult r = pool.submit(input("c-2", "mean", Map.of(), 1, 2), 5000).get(10, TimeUnit.SECONDS);
        assertEquals(1.5, Double.parseDouble(r.resultJson()));
        assertEquals("CLOSED", pool.status().get("breaker"));
    }

    private static String pyString(String s) {
        return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'";
    }

    @Test
    void twoHundredConcurrentMixedRequestsWithAWorkerKilled() throws Exception {
        PythonWorkerPool pool = started(limits(400, 0, Duration.ofSeconds(40)));
        int n = 200;
        List<CompletableFuture<PythonResult>> futures = new ArrayList<>();
        int[] completions = new int[n];
        for (int i = 0; i < n; i++) {
            String id = "mix-" + i;
            CompletableFuture<PythonResult> f;
            switch (i % 5) {
                case 0 -> f = pool.submit(input(id, "_test_echo", Map.of(), i, 1, 2), 50_000);
                case 1 -> f = pool.submit(input(id, "_test_sleep", Map.of("seconds", "0.02")), 50_000);
                case 2 -> f = pool.submit(input(id, "mean", Map.of(), i, i + 2), 50_000);
                case 3 -> f = pool.submit(input(id, "no_such_algorithm", Map.of(), 1), 50_000);
                default -> f = pool.submit(input(id, "_test_sleep", Map.of("seconds", "-1")), 50_000);
            }
            int k = i;
            f.whenComplete((r, e) -> {
                synchronized (completions) {
                    completions[k]++;
                }
            });
            futures.add(f);
            if (i == 60) {
                await("a worker busy", Duration.ofSeconds(10), () -> count(pool, "busy") >= 1);
                kill9(pidOf(pool, 0));
            }
        }
        CompletableFuture.allOf(futures.stream().map(f -> f.handle((r, e) -> null)).toArray(CompletableFuture[]::new))
                .get(50, TimeUnit.SECONDS);
        await("every completion callback to run", Duration.ofSeconds(5), () -> {
            synchronized (completions) {
                return java.util.Arrays.stream(completions).sum() >= n;
            }
        });
        for (int i = 0; i < n; i++) {
            synchronized (completions) {
                assertEquals(1, completions[i], "request " + i + " completions");
            }
            CompletableFuture<PythonResult> f = futures.get(i);
            switch (i % 5) {
                case 0 -> assertTrue(f.get().resultJson().replace(" ", "").contains("\"sum\":" + (i + 3) + ".0"), f.get().resultJson());
                case 1 -> assertTrue(f.get().resultJson().contains("slept"));
                case 2 -> assertEquals(i + 1.0, Double.parseDouble(f.get().resultJson()));
                case 3 -> assertEquals(ErrorCode.UNKNOWN_ALGORITHM, failure(f).code());
                default -> assertEquals(ErrorCode.INVALID_ARGUMENT, failure(f).code());
            }
        }
        await("the pool to be full again", Duration.ofSeconds(20), () -> count(pool, "ready") == 2);
        assertEquals(0, ((Number) pool.status().get("in_flight")).intValue());
    }

    @Test
    void rollingReloadUnderLoadFailsNothing() throws Exception {
        PythonWorkerPool pool = started(limits(100, 0, Duration.ofSeconds(10)));
        Set<Long> before = new HashSet<>(List.of(pidOf(pool, 0), pidOf(pool, 1)));
        List<Throwable> failures = java.util.Collections.synchronizedList(new ArrayList<>());
        java.util.concurrent.atomic.AtomicInteger ok = new java.util.concurrent.atomic.AtomicInteger();
        java.util.concurrent.atomic.AtomicBoolean stop = new java.util.concurrent.atomic.AtomicBoolean();
        List<Thread> clients = new ArrayList<>();
        for (int c = 0; c < 4; c++) {
            int cid = c;
            Thread t = new Thread(() -> {
                int i = 0;
                while (!stop.get()) {
                    try {
                        String alg = i % 2 == 0 ? "_test_echo" : "_test_sleep";
                        Map<String, String> p = i % 2 == 0 ? Map.of() : Map.of("seconds", "0.01");
                        pool.submit(input("rl-" + cid + "-" + i, alg, p, i, 1), 10_000).get(20, TimeUnit.SECONDS);
                        ok.incrementAndGet();
                    } catch (Exception e) {
                        failures.add(e);
                    }
                    i++;
                }
            });
            t.start();
            clients.add(t);
        }
        await("load running", Duration.ofSeconds(10), () -> ok.get() >= 20);
        pool.reloadAsync().get(60, TimeUnit.SECONDS);
        int atReloadEnd = ok.get();
        await("more load after the reload", Duration.ofSeconds(10), () -> ok.get() >= atReloadEnd + 20);
        stop.set(true);
        for (Thread t : clients) {
            t.join(30_000);
        }
        assertTrue(failures.isEmpty(), failures.size() + " failed requests, first: " + (failures.isEmpty() ? "" : failures.get(0)));
        Set<Long> after = new HashSet<>(List.of(pidOf(pool, 0), pidOf(pool, 1)));
        for (long pid : after) {
            assertFalse(before.contains(pid), "worker " + pid + " was not replaced");
        }
        for (long pid : before) {
            await("old worker " + pid + " to exit", Duration.ofSeconds(10), () -> !running(pid));
        }
        await("the pool to be full", Duration.ofSeconds(10), () -> count(pool, "ready") + count(pool, "busy") == 2);
        System.out.println("MEASURE reload_requests_ok=" + ok.get());
    }

    @Test
    void recyclesAfterMaxRequestsWithoutFailures() throws Exception {
        PythonWorkerPool pool = started(config().withRecycling(new WorkerPoolConfig.Recycling(10, 0)));
        Set<Long> pids = new HashSet<>();
        for (int i = 0; i < 40; i++) {
            PythonResult r = pool.submit(input("rc-" + i, "_test_echo", Map.of(), i), 10_000).get(10, TimeUnit.SECONDS);
            assertNotNull(r.resultJson());
            pids.add(pidOf(pool, r.workerId()));
        }
        assertTrue(meters.get("analytics.python.worker.recycles").counter().count() >= 2,
                "recycles: " + meters.get("analytics.python.worker.recycles").counter().count());
        assertTrue(pids.size() >= 3, "served by " + pids);
    }

    @Test
    void idleWorkerCheckOnDemandPingsEveryIdleWorkerBeforeItReturns() throws Exception {
        // the evictor's own pass only after a minute: any RSS seen below comes from the on-demand check
        WorkerPoolConfig c = config();
        PythonWorkerPool pool = started(c.withTimeouts(c.timeouts().withPing(Duration.ofSeconds(60), c.timeouts().pingTimeout())));
        assertTrue(workerList(pool).stream().allMatch(w -> ((Number) w.get("rss_bytes")).longValue() <= 0),
                "no pong yet: " + workerList(pool));
        // ready workers enter the pool on the supervisor's thread: wait until both are there to be checked
        await("both workers idle in the pool", Duration.ofSeconds(10),
                () -> ((Map<?, ?>) pool.status().get("pool")).get("idle").equals(2));
        assertEquals(2, pool.checkIdleWorkersNow());
        assertTrue(workerList(pool).stream().allMatch(w -> ((Number) w.get("rss_bytes")).longValue() > 1_000_000),
                "every idle worker answered a ping: " + workerList(pool));
        PythonResult r = pool.submit(input("after-check", "_test_echo", Map.of(), 1, 2, 3), 10_000).get(10, TimeUnit.SECONDS);
        assertNotNull(r.resultJson());
        pool.close();
        assertEquals(0, pool.checkIdleWorkersNow(), "closed: nothing to check");
    }

    @Test
    void idleWorkersArePingedAndReportRss() throws Exception {
        PythonWorkerPool pool = started(fastPing(config()));
        await("RSS from a pong", Duration.ofSeconds(10), () -> workerList(pool).stream()
                .allMatch(w -> ((Number) w.get("rss_bytes")).longValue() > 1_000_000));
        Map<String, Object> st = pool.status();
        assertEquals(Map.of("ready", 2, "busy", 0, "starting", 0, "down", 0), st.get("workers"));
        assertTrue(String.valueOf(st.get("python")).contains("numpy"), st.toString());
        assertEquals(2.0, meters.get("analytics.python.workers").tag("state", "ready").gauge().value());
        long sum = workerList(pool).stream().mapToLong(w -> ((Number) w.get("rss_bytes")).longValue()).sum();
        // the gauge re-reads the handles: a ping may have refreshed them in between, so compare loosely
        assertEquals(sum, meters.get("analytics.python.workers.resident.memory").gauge().value(), sum * 0.5);
        // the per-worker meters of the dashboard read the same status map: they fail here if its keys drift
        analytics.engine.metrics.WorkerSlotMetrics.bind(meters, 2, pool, PythonWorkerPool::status);
        System.gc(); // the meters must survive a collection (Micrometer holds gauge state weakly)
        for (String slot : List.of("0", "1")) {
            assertEquals(1.0, meters.get("analytics.python.slot.state").tags("worker", slot, "state", "ready").gauge().value());
            assertEquals(0.0, meters.get("analytics.python.slot.state").tags("worker", slot, "state", "busy").gauge().value());
            assertTrue(meters.get("analytics.python.slot.resident.memory").tag("worker", slot).gauge().value() > 1_000_000);
            assertEquals(0.0, meters.get("analytics.python.slot.restarts").tag("worker", slot).functionCounter().count());
            assertTrue(meters.get("analytics.python.slot.requests").tag("worker", slot).functionCounter().count() >= 0);
        }
    }

    @Test
    void closeLeavesNoWorkerBehind() throws Exception {
        PythonWorkerPool pool = started(config());
        long a = pidOf(pool, 0);
        long b = pidOf(pool, 1);
        assertTrue(running(a) && running(b));
        Path dir = pool.runtimeDir();
        assertEquals("rwx------", java.nio.file.attribute.PosixFilePermissions.toString(Files.getPosixFilePermissions(dir)));
        CompletableFuture<PythonResult> inFlight = pool.submit(input("s-1", "_test_sleep", Map.of("seconds", "5")), 20_000);
        await("busy", Duration.ofSeconds(5), () -> count(pool, "busy") == 1);
        long t0 = System.nanoTime();
        pool.close();
        assertTrue((System.nanoTime() - t0) / 1_000_000 < 6000, "close took too long");
        assertFalse(running(a), "worker " + a + " survived close()");
        assertFalse(running(b), "worker " + b + " survived close()");
        assertEquals(ErrorCode.UNAVAILABLE, failure(inFlight).code());
        assertFalse(Files.exists(dir), "runtime dir not removed");
        assertEquals(ErrorCode.UNAVAILABLE, failure(pool.submit(input("s-2", "mean", Map.of(), 1), 1000)).code());
    }

    @Test
    void missingPythonIsAClearError() {
        IllegalArgumentException e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                () -> new PythonWorkerPool(WorkerPoolConfig.defaults(null), meters));
        assertTrue(e.getMessage().contains("ANALYTICS_PYTHON"), e.getMessage());
    }

    @Test
    void jvmKill9LeavesNoWorkerBehind() throws Exception {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        Process child = new ProcessBuilder(java, "-cp", System.getProperty("java.class.path"),
                PoolChildMain.class.getName(), WorkerTestSupport.python().toString(),
                WorkerTestSupport.repoRoot().resolve("py-worker").toString())
                .redirectErrorStream(true).start();
        List<Long> pids = new ArrayList<>();
        try (var r = new java.io.BufferedReader(new java.io.InputStreamReader(child.getInputStream()))) {
            String line;
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(40);
            while ((line = r.readLine()) != null && System.nanoTime() < deadline) {
                if (line.startsWith("WORKER_PIDS ")) {
                    for (String p : line.substring(12).trim().split(" ")) {
                        pids.add(Long.parseLong(p));
                    }
                    break;
                }
            }
            assertEquals(3, pids.size(), "child JVM did not report its 2 worker pids and its fork-server template's");
            for (long p : pids) {
                assertTrue(running(p));
            }
            kill9(child.pid());
            assertTrue(child.waitFor(10, TimeUnit.SECONDS));
        } finally {
            child.destroyForcibly();
        }
        for (long p : pids) {
            await("orphaned worker " + p + " to exit after the JVM's kill -9", Duration.ofSeconds(10), () -> !running(p));
        }
        assertNotEquals(0, pids.get(0));
    }

    @Test
    void workerDyingOnEveryAttemptGivesWorkerFailedAfterOneRetry() throws Exception {
        PythonWorkerPool pool = started(config());
        AnalysisException e = failure(pool.submit(input("cr-1", "_test_crash", Map.of("code", "3")), 20_000));
        assertEquals(ErrorCode.WORKER_FAILED, e.code(), e.getMessage());
        assertTrue(e.getMessage().contains("exited with status 3") && e.getMessage().contains("_test_crash")
                && e.getMessage().contains("retry"), e.getMessage());
        assertEquals(1.0, meters.get("analytics.python.retries").counter().count());
        await("the pool to be full again", Duration.ofSeconds(20), () -> count(pool, "ready") == 2);
        assertNotNull(pool.submit(input("cr-2", "mean", Map.of(), 1, 2), 5000).get(10, TimeUnit.SECONDS));
    }

    @Test
    void garbageFrameFromWorkerIsAProtocolErrorAndTheWorkerIsReplaced() throws Exception {
        PythonWorkerPool pool = started(config());
        long before0 = pidOf(pool, 0);
        long before1 = pidOf(pool, 1);
        AnalysisException e = failure(pool.submit(input("g-1", "_test_garbage", Map.of()), 20_000));
        assertEquals(ErrorCode.WORKER_FAILED, e.code(), e.getMessage());
        assertTrue(e.getMessage().contains("protocol error"), e.getMessage());
        await("both garbage-writing workers gone", Duration.ofSeconds(10), () -> !running(before0) && !running(before1));
        await("the pool to be full again", Duration.ofSeconds(20), () -> count(pool, "ready") == 2);
        assertNotNull(pool.submit(input("g-2", "mean", Map.of(), 1, 2), 5000).get(10, TimeUnit.SECONDS));
    }

    @Test
    void overloadIsAFastClearError() throws Exception {
        PythonWorkerPool pool = started(limits(3, 0, Duration.ofMillis(300)));
        List<CompletableFuture<PythonResult>> busy = List.of(
                pool.submit(input("o-1", "_test_sleep", Map.of("seconds", "1.5")), 10_000),
                pool.submit(input("o-2", "_test_sleep", Map.of("seconds", "1.5")), 10_000));
        await("both workers busy", Duration.ofSeconds(5), () -> count(pool, "busy") == 2);
        long t0 = System.nanoTime();
        AnalysisException waited = failure(pool.submit(input("o-3", "mean", Map.of(), 1), 10_000));
        long ms = (System.nanoTime() - t0) / 1_000_000;
        assertEquals(ErrorCode.OVERLOADED, waited.code());
        assertTrue(waited.getMessage().startsWith("all 2 Python workers are busy; waited "), waited.getMessage());
        assertTrue(ms >= 280 && ms < 1200, "borrow wait took " + ms + " ms");
        // bulkhead: 2 running + 1 waiting = 3 admitted; the 4th is refused at once
        CompletableFuture<PythonResult> third = pool.submit(input("o-4", "mean", Map.of(), 1), 10_000);
        AnalysisException full = failure(pool.submit(input("o-5", "mean", Map.of(), 1), 10_000));
        assertEquals(ErrorCode.OVERLOADED, full.code());
        assertTrue(full.getMessage().contains("too many concurrent Python requests (limit 3)"), full.getMessage());
        failure(third);
        for (CompletableFuture<PythonResult> f : busy) {
            assertTrue(f.get(10, TimeUnit.SECONDS).resultJson().contains("slept"));
        }
        assertEquals("CLOSED", pool.status().get("breaker"), "overload must not trip the breaker");
    }

    @Test
    void oversizedRequestIsRejectedBeforeReachingAWorker() throws Exception {
        PythonWorkerPool pool = started(config().withMaxFrameBytes(64 * 1024));
        AnalysisException e = failure(pool.submit(input("big", "mean", Map.of(), new double[10_000]), 5000));
        assertEquals(ErrorCode.INVALID_ARGUMENT, e.code());
        assertTrue(e.getMessage().contains("frame limit"), e.getMessage());
        assertEquals(2, count(pool, "ready"));
    }

    @Test
    void requestAllocatingWithoutBoundIsStoppedAtTheMemoryLimit() throws Exception {
        PythonWorkerPool pool = started(config().withRecycling(new WorkerPoolConfig.Recycling(10_000, 150L * 1024 * 1024))); // hard limit 300 MiB
        long t0 = System.nanoTime();
        AnalysisException e = failure(pool.submit(input("mem-1", "_test_alloc", Map.of()), 30_000));
        long ms = (System.nanoTime() - t0) / 1_000_000;
        assertEquals(ErrorCode.WORKER_FAILED, e.code(), e.getMessage());
        assertTrue(e.getMessage().contains("exceeded the limit of 300 MiB") && e.getMessage().contains("_test_alloc")
                && !e.getMessage().contains("retry"), e.getMessage());
        assertTrue(ms < 10_000, "took " + ms + " ms");
        assertEquals(0.0, meters.get("analytics.python.retries").counter().count(), "must not be retried");
        await("the pool to be full again", Duration.ofSeconds(20), () -> count(pool, "ready") == 2);
    }

    @Test
    void idleWorkerOverTheRssLimitIsRecycled() throws Exception {
        // an idle worker is well above 8 MiB: every ping recycles it, gracefully, without failing requests
        PythonWorkerPool pool = started(fastPing(config().withRecycling(new WorkerPoolConfig.Recycling(0, 8L * 1024 * 1024))));
        long first = pidOf(pool, 0);
        await("an RSS recycle", Duration.ofSeconds(15),
                () -> meters.get("analytics.python.worker.recycles").counter().count() >= 1);
        await("worker 0 replaced", Duration.ofSeconds(15), () -> !running(first));
        assertEquals(0.0, meters.get("analytics.python.worker.crashes").counter().count());
    }

    @Test
    void rateLimitAnswersOverloaded() throws Exception {
        PythonWorkerPool pool = started(limits(100, 3, Duration.ofSeconds(2)));
        List<CompletableFuture<PythonResult>> fs = new ArrayList<>();
        for (int i = 0; i < 6; i++) {
            fs.add(pool.submit(input("rate-" + i, "mean", Map.of(), i), 5000));
        }
        int limited = 0;
        for (CompletableFuture<PythonResult> f : fs) {
            try {
                f.get(10, TimeUnit.SECONDS);
            } catch (ExecutionException e) {
                AnalysisException ae = (AnalysisException) e.getCause();
                assertEquals(ErrorCode.OVERLOADED, ae.code());
                assertTrue(ae.getMessage().contains("rate limit of 3 per second"), ae.getMessage());
                limited++;
            }
        }
        assertTrue(limited >= 2 && limited <= 3, "limited " + limited + " of 6");
    }

    @Test
    void allWorkersDyingAtOnceLosesNoRequest() throws Exception {
        PythonWorkerPool pool = started(config());
        List<CompletableFuture<PythonResult>> fs = new ArrayList<>();
        for (int i = 0; i < 6; i++) {
            fs.add(pool.submit(input("all-" + i, "_test_sleep", Map.of("seconds", "0.3")), 30_000));
        }
        await("both busy", Duration.ofSeconds(5), () -> count(pool, "busy") == 2);
        kill9(pidOf(pool, 0));
        kill9(pidOf(pool, 1));
        for (CompletableFuture<PythonResult> f : fs) {
            assertTrue(f.get(30, TimeUnit.SECONDS).resultJson().contains("slept"));
        }
        await("the pool to be full again", Duration.ofSeconds(20), () -> count(pool, "ready") == 2);
    }

    @Test
    void badPythonPathIsReportedClearly() throws Exception {
        WorkerPoolConfig cfg = config().withPython(Path.of("/nonexistent/bin/python3"))
                .withRestart(new WorkerPoolConfig.Restart(Duration.ofMillis(10), Duration.ofMillis(50), 2));
        PythonWorkerPool pool = new PythonWorkerPool(cfg, meters);
        pools.add(pool);
        pool.start();
        assertFalse(pool.awaitReady(Duration.ofSeconds(10), false));
        await("both slots down", Duration.ofSeconds(10), () -> count(pool, "down") == 2);
        AnalysisException e = failure(pool.submit(input("bp-1", "mean", Map.of(), 1), 5000));
        assertEquals(ErrorCode.UNAVAILABLE, e.code());
        assertTrue(e.getMessage().contains("cannot start /nonexistent/bin/python3"), e.getMessage());
        assertFalse(pool.isAvailable());
    }
}
