package analytics.engine.dispatch;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import analytics.engine.proto.AnalysisOptions;
import analytics.engine.proto.AnalysisRequest;
import analytics.engine.proto.AnalysisResponse;
import analytics.engine.server.TestEngine;
import analytics.engine.stats.NativeStatistics;
import analytics.engine.workers.PythonWorkerPool;
import analytics.engine.workers.WorkerPoolConfig;
import com.fasterxml.jackson.databind.JsonNode;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Every statistic both sides implement gives the same answer natively (prefer_rust=true) and in a real
 * Python worker (prefer_rust=false), through the real server.
 */
class NativePythonParityTest {

    static PythonWorkerPool pool;
    static TestEngine engine;

    static Path python() {
        return analytics.engine.workers.WorkerTestSupport.python();
    }

    @BeforeAll
    static void start() throws Exception {
        pool = new PythonWorkerPool(WorkerPoolConfig.defaults(python()).withWorkers(1),
                new SimpleMeterRegistry());
        pool.start();
        assertTrue(pool.awaitReady(Duration.ofSeconds(60)), "worker did not start: " + pool.status());
        engine = new TestEngine(Map.of("workers", "1"), pool);
    }

    @AfterAll
    static void stop() throws Exception {
        if (engine != null) {
            engine.close();
        }
        if (pool != null) {
            pool.close();
        }
    }

    static Map<String, double[]> datasets() {
        Random r = new Random(7);
        Map<String, double[]> m = new LinkedHashMap<>();
        double[] normal = new double[2001];
        double[] offset = new double[500];
        double[] dupes = new double[300];
        for (int i = 0; i < normal.length; i++) {
            normal[i] = r.nextGaussian() * 3 + 1;
        }
        for (int i = 0; i < offset.length; i++) {
            offset[i] = 1e9 + r.nextDouble();
        }
        for (int i = 0; i < dupes.length; i++) {
            dupes[i] = r.nextInt(7) * 0.5;
        }
        m.put("normal", normal);
        m.put("large-offset", offset);
        m.put("duplicates", dupes);
        m.put("small", new double[] {3, -1, 4, 1, -5, 9, 2, 6});
        return m;
    }

    AnalysisResponse run(String algorithm, double[] data, boolean preferNative) {
        AnalysisRequest.Builder b = AnalysisRequest.newBuilder().setRequestId(algorithm).setAlgorithm(algorithm)
                .putParams("percentile", "37.5")
                .setOptions(AnalysisOptions.newBuilder().setPreferRust(preferNative).setAllowPython(true)
                        .setTimeoutMs(30000).setIncludeMetadata(true));
        for (double d : data) {
            b.addData(d);
        }
        return engine.stub.analyze(b.build());
    }

    @Test
    void everyStatisticMatches() throws Exception {
        int compared = 0;
        for (String algorithm : NativeStatistics.KERNELS.keySet()) {
            for (Map.Entry<String, double[]> ds : datasets().entrySet()) {
                AnalysisResponse nat = run(algorithm, ds.getValue(), true);
                AnalysisResponse py = run(algorithm, ds.getValue(), false);
                String where = algorithm + " on " + ds.getKey();
                assertEquals("native", nat.getMetadata().getImplementation(), where);
                assertEquals("python", py.getMetadata().getImplementation(), where);
                assertEquals(nat.getSuccess(), py.getSuccess(), where + ": " + nat.getErrorMessage() + " / "
                        + py.getErrorMessage());
                if (!nat.getSuccess()) {
                    assertEquals(nat.getErrorCode(), py.getErrorCode(), where);
                    continue;
                }
                JsonNode a = ResultJson.mapper().readTree(nat.getResultJson());
                JsonNode b = ResultJson.mapper().readTree(py.getResultJson());
                same(where, a, b);
                compared++;
            }
        }
        assertEquals(17 * 4, compared);
    }

    static void same(String where, JsonNode nat, JsonNode py) {
        if (nat.isNumber()) {
            assertTrue(py.isNumber(), where + ": python gave " + py);
            if (nat.isIntegralNumber()) {
                assertTrue(py.isIntegralNumber(), where + ": integer expected from python, got " + py);
            }
            double x = nat.asDouble();
            double y = py.asDouble();
            double tol = 1e-9 * Math.max(1.0, Math.max(Math.abs(x), Math.abs(y)));
            assertEquals(x, y, tol, where);
        } else if (nat.isObject()) {
            Iterator<String> names = nat.fieldNames();
            while (names.hasNext()) {
                String k = names.next();
                assertTrue(py.has(k), where + ": python result lacks key " + k + ": " + py);
                same(where + "." + k, nat.get(k), py.get(k));
            }
        } else if (nat.isArray()) {
            assertEquals(nat.size(), py.size(), where);
            for (int i = 0; i < nat.size(); i++) {
                same(where + "[" + i + "]", nat.get(i), py.get(i));
            }
        } else {
            assertEquals(nat, py, where);
        }
    }
}
