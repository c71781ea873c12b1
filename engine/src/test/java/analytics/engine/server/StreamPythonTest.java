package analytics.engine.server;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import analytics.engine.proto.AnalysisRequest;
import analytics.engine.proto.AnalysisResponse;
import analytics.engine.proto.ErrorCode;
import analytics.engine.workers.PythonWorkerPool;
import analytics.engine.workers.WorkerPoolConfig;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** AnalyzeStream for algorithms that need the whole series: gathered, then run by a real Python worker. */
class StreamPythonTest {

    static PythonWorkerPool pool;

    static Path python() {
        return analytics.engine.workers.WorkerTestSupport.python();
    }

    @BeforeAll
    static void start() throws Exception {
        pool = new PythonWorkerPool(WorkerPoolConfig.defaults(python()).withWorkers(1),
                new SimpleMeterRegistry());
        pool.start();
        assertTrue(pool.awaitReady(Duration.ofSeconds(60)), "worker did not start: " + pool.status());
    }

    @AfterAll
    static void stop() {
        if (pool != null) {
            pool.close();
        }
    }

    @Test
    void pythonAlgorithmsStreamedEqualAnalyzeAndTheLimitIsClear() throws Exception {
        try (TestEngine engine = new TestEngine(Map.of("workers", "1", "stream_max_points", "5000"), pool)) {
            SplittableRandom r = new SplittableRandom(3);
            double[] x = new double[3000];
            for (int i = 0; i < x.length; i++) {
                x[i] = (i % 2 == 0 ? 0 : 10) + r.nextDouble();
            }
            for (String alg : new String[] {"kmeans", "anomaly_detection"}) {
                Map<String, String> params = alg.equals("kmeans") ? Map.of("k", "2") : Map.of("method", "iqr");
                AnalysisResponse s = StreamIngestTestSupport.stream(engine, alg, params, x, 700);
                assertTrue(s.getSuccess(), alg + ": " + s.getErrorMessage());
                assertEquals("python", s.getMetadata().getImplementation());
                AnalysisRequest.Builder b = AnalysisRequest.newBuilder().setAlgorithm(alg).putAllParams(params);
                for (double v : x) {
                    b.addData(v);
                }
                assertEquals(engine.stub.analyze(b.build()).getResultJson(), s.getResultJson(), alg);
            }
            AnalysisResponse big = StreamIngestTestSupport.stream(engine, "kmeans", Map.of("k", "2"), new double[6000], 1000);
            assertFalse(big.getSuccess());
            assertEquals(ErrorCode.INVALID_ARGUMENT, big.getErrorCode());
            assertTrue(big.getErrorMessage().contains("stream_max_points = 5000"), big.getErrorMessage());
        }
    }
}
