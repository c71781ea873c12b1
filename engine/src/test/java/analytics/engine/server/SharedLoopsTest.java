package analytics.engine.server;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import analytics.engine.api.AnalysisInput;
import analytics.engine.proto.AnalysisOptions;
import analytics.engine.proto.AnalysisRequest;
import analytics.engine.proto.AnalysisResponse;
import analytics.engine.proto.ErrorCode;
import analytics.engine.workers.PythonWorkerPool;
import analytics.engine.workers.WorkerTestSupport;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import io.netty.channel.EventLoopGroup;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The engine as Main wires it: the gRPC server and the Python worker connections on one set of event loops
 * ({@link EngineServer#newSharedLoops}), which neither shuts down: their owner does, after both.
 */
@Timeout(value = 90, unit = TimeUnit.SECONDS)
class SharedLoopsTest {

    private static AnalysisRequest echo(String id, int n) {
        AnalysisRequest.Builder b = AnalysisRequest.newBuilder().setRequestId(id).setAlgorithm("_test_echo")
                .setOptions(AnalysisOptions.newBuilder().setAllowPython(true));
        for (int i = 0; i < n; i++) {
            b.addData(i);
        }
        return b.build();
    }

    @Test
    void pythonCallsDeadlinesAndShutdownOrderOnSharedLoops() throws Exception {
        EventLoopGroup loops = EngineServer.newSharedLoops();
        assertNotNull(loops, "netty-epoll is available on Linux");
        PythonWorkerPool pool = new PythonWorkerPool(WorkerTestSupport.config(), new SimpleMeterRegistry())
                .useEventLoops(loops);
        try {
            pool.start();
            assertTrue(pool.awaitReady(Duration.ofSeconds(60), true), "workers did not start: " + pool.status());
            try (TestEngine engine = new TestEngine(Map.of("workers", "2", "test_mode", "true"), pool, loops)) {
                for (int i = 0; i < 20; i++) { // small requests: handled on the network thread, and answered there
                    AnalysisResponse r = engine.stub.withDeadlineAfter(30, TimeUnit.SECONDS).analyze(echo("e-" + i, 100));
                    assertTrue(r.getSuccess(), r.getErrorMessage());
                    assertTrue(r.getResultJson().contains("4950"), r.getResultJson()); // sum(0..99)
                }
                long t0 = System.nanoTime();
                AnalysisResponse slow = engine.stub.withDeadlineAfter(30, TimeUnit.SECONDS).analyze(
                        AnalysisRequest.newBuilder().setRequestId("slow").setAlgorithm("_test_sleep")
                                .putParams("seconds", "600")
                                .setOptions(AnalysisOptions.newBuilder().setAllowPython(true).setTimeoutMs(300)).build());
                long tookMs = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0);
                assertEquals(ErrorCode.TIMEOUT, slow.getErrorCode(), slow.getErrorMessage());
                assertTrue(tookMs >= 300, "TIMEOUT before the deadline: " + tookMs + " ms");
                AnalysisResponse after = engine.stub.withDeadlineAfter(30, TimeUnit.SECONDS).analyze(echo("after", 10));
                assertTrue(after.getSuccess(), after.getErrorMessage());
            }
            // the server is down; the loops, and the workers on them, are not
            assertFalse(loops.isShuttingDown(), "the server shut down loops it does not own");
            AnalysisInput in = new AnalysisInput("direct", "_test_echo", new double[] {1, 2}, 2, 1, false, null,
                    List.of(), Map.of());
            assertTrue(pool.submit(in, 10_000).get(20, TimeUnit.SECONDS).resultJson().contains("3"));
        } finally {
            pool.close();
            assertFalse(loops.isShuttingDown(), "the pool shut down loops it does not own");
            loops.shutdownGracefully(0, 1, TimeUnit.SECONDS).awaitUninterruptibly(5, TimeUnit.SECONDS);
        }
    }
}
