package analytics.engine.stats;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import analytics.engine.api.AnalysisException;
import analytics.engine.proto.ErrorCode;
import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/**
 * Every kernel against the numpy/scipy reference values of tests/fixtures/stats_fixtures.json
 * (regenerate with tests/fixtures/generate_stats_fixtures.py). Tolerances: order statistics,
 * counts and mode exact; mean/std/variance/skewness/kurtosis relative 1e-12; the lag-1
 * autocorrelation (bounded by 1, numpy computes it through BLAS) absolute 1e-12.
 */
class NativeStatisticsFixtureTest {

    private static final Set<String> EXACT = Set.of("median", "min", "max", "range", "percentile",
            "q1", "q3", "iqr", "q25", "q75");
    private static final Set<String> RELATIVE = Set.of("mean", "std", "variance", "skewness",
            "kurtosis");

    @TestFactory
    Stream<DynamicTest> everyFixtureCase() {
        List<DynamicTest> tests = new ArrayList<>();
        for (JsonNode c : StatsFixtures.root().get("cases")) {
            String alg = c.get("algorithm").asText();
            String ds = c.get("dataset").asText();
            Map<String, String> params = new LinkedHashMap<>();
            c.get("params").fields().forEachRemaining(e -> params.put(e.getKey(), e.getValue().asText()));
            String name = alg + " " + ds + (params.isEmpty() ? "" : " " + params);
            tests.add(DynamicTest.dynamicTest(name, () -> runCase(alg, ds, params, c)));
        }
        return tests.stream();
    }

    private static void runCase(String alg, String ds, Map<String, String> params, JsonNode c)
            throws Exception {
        double[] data = StatsFixtures.dataset(ds);
        double[] before = data.clone();
        NativeKernel k = NativeStatistics.KERNELS.get(alg);
        if (c.has("error")) {
            AnalysisException e = assertThrows(AnalysisException.class, () -> k.compute(data, params));
            assertEquals(ErrorCode.INVALID_ARGUMENT, e.code());
            String want = c.get("error").asText();
            assertTrue(e.getMessage().contains(want),
                    () -> "message '" + e.getMessage() + "' lacks '" + want + "'");
        } else {
            Object got = k.compute(data, params);
            check(alg, c.get("expected"), got);
        }
        assertArrayEquals(before, data, "kernel modified its input");
    }

    static void check(String key, JsonNode want, Object got) {
        switch (key) {
            case "count", "data_size", "frequency" -> {
                assertInstanceOf(Long.class, got, key);
                assertEquals(want.asLong(), (long) (Long) got, key);
            }
            case "mode" -> checkMode(want, got);
            case "summary" -> checkSummary(want, got);
            default -> checkScalar(key, want, got);
        }
    }

    static void checkScalar(String key, JsonNode want, Object got) {
        if (want == null || want.isNull()) {
            assertNull(got, key + " should be null");
            return;
        }
        assertInstanceOf(Double.class, got, key);
        double g = (Double) got;
        double w = want.doubleValue();
        if (EXACT.contains(key)) {
            assertEquals(w, g, 0.0, key + " (exact)");
        } else if (RELATIVE.contains(key)) {
            double tol = 1e-12 * Math.abs(w);
            if (!(Math.abs(g - w) <= tol)) {
                fail(key + ": expected " + w + " got " + g + " (rel err "
                        + Math.abs(g - w) / Math.abs(w) + ")");
            }
        } else if (key.equals("correlation") || key.equals("autocorr")) {
            assertEquals(w, g, 1e-12, key);
        } else {
            fail("no tolerance rule for " + key);
        }
    }

    @SuppressWarnings("unchecked")
    static void checkMode(JsonNode want, Object got) {
        Map<String, Object> m = assertInstanceOf(Map.class, got);
        assertEquals(List.of("modes", "count", "frequency", "is_multimodal", "data_size"),
                new ArrayList<>(m.keySet()));
        List<Double> modes = (List<Double>) m.get("modes");
        JsonNode wm = want.get("modes");
        assertEquals(wm.size(), modes.size(), "number of modes");
        for (int i = 0; i < modes.size(); i++) {
            assertEquals(wm.get(i).doubleValue(), (double) modes.get(i), 0.0, "mode " + i);
        }
        check("count", want.get("count"), m.get("count"));
        check("frequency", want.get("frequency"), m.get("frequency"));
        check("data_size", want.get("data_size"), m.get("data_size"));
        assertEquals(want.get("is_multimodal").asBoolean(), m.get("is_multimodal"));
    }

    @SuppressWarnings("unchecked")
    static void checkSummary(JsonNode want, Object got) {
        Map<String, Object> m = assertInstanceOf(Map.class, got);
        List<String> keys = new ArrayList<>();
        Iterator<String> it = want.fieldNames();
        it.forEachRemaining(keys::add);
        assertEquals(keys, new ArrayList<>(m.keySet()), "summary keys and order");
        for (String key : keys) {
            check(key.equals("autocorr") ? "autocorr" : key, want.get(key), m.get(key));
        }
    }

    // ------------------------------------------------------------------ coverage of the fixtures

    @Test
    void fixturesCoverEveryKernelAndTheRequiredCases() {
        Set<String> algs = new HashSet<>();
        Set<String> pairs = new HashSet<>();
        for (JsonNode c : StatsFixtures.root().get("cases")) {
            algs.add(c.get("algorithm").asText());
            pairs.add(c.get("algorithm").asText() + "/" + c.get("dataset").asText());
        }
        assertEquals(NativeStatistics.KERNELS.keySet(), algs);
        for (String alg : NativeStatistics.KERNELS.keySet()) {
            for (String ds : List.of("large_offset", "large_offset_exact", "tiny_variance",
                    "duplicate_heavy", "single", "two", "negative", "empty")) {
                assertTrue(pairs.contains(alg + "/" + ds), alg + "/" + ds);
            }
            assertTrue(pairs.contains(alg + "/lcg_1e6") || pairs.contains(alg + "/lcg_1e6_coarse"),
                    alg + " has a 10^6-point case");
        }
    }

    @Test
    void meanAndVarianceAreBitIdenticalToNumpyOnOrdinaryData() throws Exception {
        JsonNode b = StatsFixtures.root().get("numpy_float64_bitwise");
        int checked = 0;
        for (String stat : List.of("mean", "variance")) {
            Iterator<Map.Entry<String, JsonNode>> it = b.get(stat).fields();
            while (it.hasNext()) {
                Map.Entry<String, JsonNode> e = it.next();
                Object got = NativeStatistics.KERNELS.get(stat).compute(StatsFixtures.dataset(e.getKey()), Map.of());
                assertEquals(e.getValue().doubleValue(), (Double) got, 0.0, stat + " " + e.getKey());
                checked++;
            }
        }
        assertTrue(checked >= 10);
    }

    @Test
    void lcgGenerationMatchesThePythonSide() {
        JsonNode first = StatsFixtures.root().get("lcg").get("first_values_lcg_1e6");
        double[] d = StatsFixtures.dataset("lcg_1e6");
        assertEquals(1_000_000, d.length);
        for (int i = 0; i < first.size(); i++) {
            assertEquals(first.get(i).doubleValue(), d[i], 0.0);
        }
        assertFalse(first.isEmpty());
    }
}
