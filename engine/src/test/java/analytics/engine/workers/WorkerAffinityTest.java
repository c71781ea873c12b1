package analytics.engine.workers;

import static analytics.engine.workers.WorkerTestSupport.config;
import static analytics.engine.workers.WorkerTestSupport.input;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import analytics.engine.api.PythonBackend.PythonResult;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import io.netty.channel.EventLoop;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.epoll.EpollEventLoopGroup;
import io.netty.util.concurrent.DefaultThreadFactory;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * A cheap request handled on a network event loop prefers an idle worker whose connection that loop serves
 * ({@link WorkerWait#borrowNowNearby}), so that the request, the answer and the response stay on one thread.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class WorkerAffinityTest {

    // ------------------------------------------------------------------ the choice itself (no pool)

    @Test
    void firstIsKeptWhenLocalAndNothingMoreIsTaken() {
        Deque<String> idle = new ArrayDeque<>(List.of("b", "c"));
        List<String> back = new ArrayList<>();
        assertEquals("a", WorkerWait.preferLocal("a", idle::pollFirst, s -> s.equals("a"), back::add, 2));
        assertEquals(List.of("b", "c"), List.copyOf(idle));
        assertTrue(back.isEmpty());
    }

    @Test
    void aLocalOneFurtherOnIsChosenAndThePassedOnesGoBackInOrder() {
        Deque<String> idle = new ArrayDeque<>(List.of("b", "c", "d"));
        List<String> back = new ArrayList<>();
        assertEquals("c", WorkerWait.preferLocal("a", idle::pollFirst, s -> s.equals("c"), back::add, 3));
        assertEquals(List.of("a", "b"), back);
        assertEquals(List.of("d"), List.copyOf(idle), "stops at the first local one");
    }

    @Test
    void withoutALocalOneTheFirstIsUsedAndTheOthersGoBack() {
        Deque<String> idle = new ArrayDeque<>(List.of("b", "c"));
        List<String> back = new ArrayList<>();
        assertEquals("a", WorkerWait.preferLocal("a", idle::pollFirst, s -> false, back::add, 5));
        assertEquals(List.of("b", "c"), back);
        assertTrue(idle.isEmpty());
    }

    @Test
    void looksNoFurtherThanAllowed() {
        Deque<String> idle = new ArrayDeque<>(List.of("b", "c"));
        List<String> back = new ArrayList<>();
        assertEquals("a", WorkerWait.preferLocal("a", idle::pollFirst, s -> s.equals("c"), back::add, 1));
        assertEquals(List.of("b"), back);
        assertEquals(List.of("c"), List.copyOf(idle));
        assertNull(WorkerWait.preferLocal(null, idle::pollFirst, s -> true, back::add, 1));
    }

    // ------------------------------------------------------------------ real workers on shared loops

    /**
     * Two workers on a two-loop group (one each: BalancedLoops). Requests submitted from each
     * loop in turn are answered on that same loop; with the idle set's FIFO order alone every other one would not be.
     */
    @Test
    void requestsFromALoopGoToTheWorkerOnThatLoop() throws Exception {
        EventLoopGroup loops = new EpollEventLoopGroup(2, new DefaultThreadFactory("affinity-io", true));
        PythonWorkerPool pool = new PythonWorkerPool(config(), new SimpleMeterRegistry()).useEventLoops(loops);
        try {
            pool.start();
            assertTrue(pool.awaitReady(Duration.ofSeconds(30), true), "workers did not start: " + pool.status());
            // READY comes with the hello; the move into the idle set follows on the pool's scheduler (fillPoolSoon).
            // Until both are idle, request 0 could only get the one that is (CI caught that window).
            WorkerTestSupport.await("both workers idle in the pool", Duration.ofSeconds(30), () -> idleInPool(pool) == 2);
            List<EventLoop> both = List.of(loops.next(), loops.next());
            for (int i = 0; i < 10; i++) {
                EventLoop loop = both.get(i % 2);
                String id = "aff-" + i;
                double x = i;
                // submitted and continued inside one loop task: the answer cannot be read before the task ends, so
                // the continuation runs on the thread that reads the answer (the worker connection's loop)
                CompletableFuture<String> answeredOn = loop.submit(() -> pool.submit(input(id, "_test_echo", Map.of(), x, 1), 10_000)
                        .thenApply(r -> Thread.currentThread().getName())).get(10, TimeUnit.SECONDS);
                String submittedOn = loop.submit(() -> Thread.currentThread().getName()).get(10, TimeUnit.SECONDS);
                assertEquals(submittedOn, answeredOn.get(10, TimeUnit.SECONDS), "request " + i);
            }
            // off the loops (no worker is local): served as before
            PythonResult r = pool.submit(input("off-loop", "_test_echo", Map.of(), 3), 10_000).get(10, TimeUnit.SECONDS);
            assertTrue(r.resultJson().contains("3"), r.resultJson());
            assertEquals(2, WorkerTestSupport.workerList(pool).stream().filter(w -> "ready".equals(w.get("state"))).count(),
                    "both workers back in the pool: " + pool.status());
        } finally {
            pool.close();
            loops.shutdownGracefully(0, 1, TimeUnit.SECONDS).awaitUninterruptibly(5, TimeUnit.SECONDS);
        }
    }

    @SuppressWarnings("unchecked")
    private static int idleInPool(PythonWorkerPool pool) {
        Map<String, Integer> p = (Map<String, Integer>) pool.status().get("pool");
        return p == null ? 0 : p.getOrDefault("idle", 0);
    }
}
