package analytics.engine.workers;

import analytics.engine.api.PythonBackend;
import static analytics.engine.workers.WorkerTestSupport.await;
import static analytics.engine.workers.WorkerTestSupport.config;
import static analytics.engine.workers.WorkerTestSupport.count;
import static analytics.engine.workers.WorkerTestSupport.input;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import analytics.engine.api.AnalysisException;
import analytics.engine.proto.ErrorCode;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * A Python request waits for a worker up to its own deadline (queue_wait_ms = 0, the default), not a fixed
 * time: OVERLOADED only for admission and for a wait that reaches the deadline.
 */
class QueueToDeadlineTest {

    @Test
    @Timeout(value = 120, unit = TimeUnit.SECONDS)
    void sixtyKmeansOnTwoWorkersAllSucceedWhileAnotherProcessBurnsACore() throws Exception {
        assertEquals(Duration.ZERO, WorkerPoolConfig.Timeouts.defaults().borrowWait(), "the default waits up to the deadline");
        double[] points = new double[4000];
        Random rnd = new Random(42);
        for (int i = 0; i < points.length; i++) {
            points[i] = (i % 3) * 10 + rnd.nextGaussian();
        }
        // a third process burning one core for the whole test (killed by its handle, not by name)
        Process burner = new ProcessBuilder(WorkerTestSupport.python().toString(), "-c", "while True: pass")
                .redirectErrorStream(true).start();
        try (PythonWorkerPool pool = new PythonWorkerPool(config(), new SimpleMeterRegistry())) {
            pool.start();
            assertTrue(pool.awaitReady(Duration.ofSeconds(60), true), "workers did not start");
            List<CompletableFuture<PythonBackend.PythonResult>> all = new ArrayList<>();
            for (int i = 0; i < 60; i++) {
                // n_init=1: what is tested is the queueing, not kmeans' speed; one initialisation keeps the
                // total compute (60 fits over 2 workers) far below the 60 s deadline on a machine shared with
                // other jobs (with n_init=10 a full test run under load took over 60 s of compute)
                all.add(pool.submit(input("km-" + i, "kmeans", Map.of("k", "3", "n_init", "1"), points), 60_000));
            }
            int ok = 0;
            List<String> failures = new ArrayList<>();
            for (CompletableFuture<PythonBackend.PythonResult> f : all) {
                try {
                    assertTrue(f.get(90, TimeUnit.SECONDS).resultJson().contains("\"n_clusters\":3"));
                    ok++;
                } catch (ExecutionException e) {
                    failures.add(e.getCause().getMessage());
                }
            }
            assertEquals(60, ok, "failed: " + failures);
        } finally {
            burner.destroyForcibly();
            burner.waitFor(10, TimeUnit.SECONDS);
        }
    }

    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void aWaitThatReachesTheDeadlineIsOverloadedAndLeavesTheBreakerClosed() throws Exception {
        try (PythonWorkerPool pool = new PythonWorkerPool(config(), new SimpleMeterRegistry())) {
            pool.start();
            assertTrue(pool.awaitReady(Duration.ofSeconds(60), true), "workers did not start");
            List<CompletableFuture<PythonBackend.PythonResult>> busy = List.of(
                    pool.submit(input("b-1", "_test_sleep", Map.of("seconds", "3")), 20_000),
                    pool.submit(input("b-2", "_test_sleep", Map.of("seconds", "3")), 20_000));
            await("both workers busy", Duration.ofSeconds(10), () -> count(pool, "busy") == 2);
            CompletableFuture<PythonBackend.PythonResult> late = pool.submit(input("late", "mean", Map.of(), 1, 2), 300);
            try {
                late.get(20, TimeUnit.SECONDS);
                fail("expected OVERLOADED");
            } catch (ExecutionException e) {
                AnalysisException ae = (AnalysisException) e.getCause();
                assertEquals(ErrorCode.OVERLOADED, ae.code(), ae.getMessage());
                assertTrue(ae.getMessage().contains("no Python worker became free within the request's deadline of 300 ms"),
                        ae.getMessage());
            }
            // a request with budget left waits for a worker instead of being refused, and succeeds
            CompletableFuture<PythonBackend.PythonResult> patient = pool.submit(input("patient", "mean", Map.of(), 1, 2), 20_000);
            assertTrue(patient.get(20, TimeUnit.SECONDS).resultJson().contains("1.5"));
            for (CompletableFuture<PythonBackend.PythonResult> f : busy) {
                f.get(20, TimeUnit.SECONDS);
            }
            assertEquals("CLOSED", pool.status().get("breaker"), "waiting for a worker must not trip the breaker");
        }
    }
}
