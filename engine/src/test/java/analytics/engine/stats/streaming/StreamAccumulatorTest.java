package analytics.engine.stats.streaming;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import analytics.engine.api.AnalysisException;
import analytics.engine.stats.NativeStatistics;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** The streaming accumulator against the one-shot kernels on the same data. */
class StreamAccumulatorTest {

    private static final List<String> MOMENT_STATS = List.of("mean", "variance", "std", "skewness", "kurtosis",
            "correlation", "min", "max", "range");

    @BeforeAll
    static void seed() {
        assertTrue(StreamingQuantiles.seedSketchRandom(7), "KLL random generator not found");
    }

    /** AR(1) with exponential (skewed) innovations around an offset: skewness, kurtosis, autocorr ~ O(1). */
    static double[] ar1(int n, long seed, double offset) {
        SplittableRandom r = new SplittableRandom(seed);
        double[] x = new double[n];
        double prev = 0;
        for (int i = 0; i < n; i++) {
            double e = -Math.log(1 - r.nextDouble());
            prev = 0.6 * prev + e;
            x[i] = offset + prev;
        }
        return x;
    }

    static double oneShot(String alg, double[] x, Map<String, String> p) throws AnalysisException {
        return ((Number) NativeStatistics.KERNELS.get(alg).compute(x, p)).doubleValue();
    }

    /** Streams x in chunks of random sizes (1..maxChunk) through a fresh accumulator. */
    static StreamAccumulator.Result stream(String alg, double[] x, Map<String, String> p, long exactMax, int k,
                                           int maxChunk, long seed) throws AnalysisException {
        StreamAccumulator a = new StreamAccumulator(alg, p, NativeStatistics.KERNELS,
                NativeStatistics.minPoints(alg), exactMax, k);
        SplittableRandom r = new SplittableRandom(seed);
        int i = 0;
        while (i < x.length) {
            int m = Math.min(x.length - i, 1 + r.nextInt(maxChunk));
            for (int j = 0; j < m; j++) {
                a.add(x[i + j]);
            }
            i += m;
        }
        return a.finish();
    }

    static void assertRel(double expected, double actual, double rel, String what) {
        double err = Math.abs(actual - expected) / Math.max(Math.abs(expected), Double.MIN_NORMAL);
        assertTrue(err <= rel, what + ": expected " + expected + " got " + actual + " (relative error " + err + ")");
    }

    @Test
    void momentsMatchOneShotKernelsWithin1e12() throws Exception {
        for (double offset : new double[] {0.0, 10.0, -250.0}) {
            double[] x = ar1(1_000_003, 11, offset);
            for (String alg : MOMENT_STATS) {
                for (int maxChunk : new int[] {1, 37, 100_000}) {
                    double got = ((Number) stream(alg, x, Map.of(), 0, 200, maxChunk, 5).value()).doubleValue();
                    assertRel(oneShot(alg, x, Map.of()), got, 1e-12, alg + " offset " + offset + " chunk " + maxChunk);
                }
            }
            assertEquals((long) x.length, stream("count", x, Map.of(), 0, 200, 999, 1).value());
        }
    }

    @Test
    void trendingAndOffsetDataStayAccurate() throws Exception {
        // a strong trend: block means differ widely, exercising the merge terms
        double[] t = ar1(500_000, 3, 0);
        for (int i = 0; i < t.length; i++) {
            t[i] += i * 1e-3;
        }
        for (String alg : MOMENT_STATS) {
            double got = ((Number) stream(alg, t, Map.of(), 0, 200, 5000, 9).value()).doubleValue();
            double expected = oneShot(alg, t, Map.of());
            if (List.of("skewness", "kurtosis", "correlation").contains(alg)) {
                // dimensionless; here the trend makes the skewness ~1e-4 (a cancellation in M3), so the
                // relative bound applies to max(|value|, 1)
                assertTrue(Math.abs(got - expected) <= 1e-12 * Math.max(1, Math.abs(expected)),
                        "trend " + alg + ": " + expected + " vs " + got);
            } else {
                assertRel(expected, got, 1e-12, "trend " + alg);
            }
        }
        // a large offset (condition number ~1e16 for naive sum-of-squares): variance still accurate
        double[] o = ar1(200_000, 4, 1e8);
        assertRel(oneShot("variance", o, Map.of()),
                ((Number) stream("variance", o, Map.of(), 0, 200, 3000, 2).value()).doubleValue(), 1e-8, "offset variance");
        assertRel(oneShot("mean", o, Map.of()),
                ((Number) stream("mean", o, Map.of(), 0, 200, 3000, 2).value()).doubleValue(), 1e-15, "offset mean");
    }

    @Test
    void exactQuantilesAreIdenticalToOneShot() throws Exception {
        double[] x = ar1(123_457, 21, 0);
        for (String alg : List.of("median", "q1", "q3", "iqr")) {
            StreamAccumulator.Result r = stream(alg, x, Map.of(), 1_000_000, 200, 777, 3);
            assertEquals(oneShot(alg, x, Map.of()), ((Number) r.value()).doubleValue(), 0.0, alg);
            assertEquals("exact", r.stats().get("quantile_method"));
        }
        for (String p : List.of("0", "12.5", "90", "100")) {
            Map<String, String> params = Map.of("percentile", p);
            assertEquals(oneShot("percentile", x, params),
                    ((Number) stream("percentile", x, params, 1_000_000, 200, 777, 3).value()).doubleValue(), 0.0, p);
        }
        Map<?, ?> s = (Map<?, ?>) stream("summary", x, Map.of(), 1_000_000, 200, 777, 3).value();
        Map<?, ?> one = (Map<?, ?>) NativeStatistics.KERNELS.get("summary").compute(x, Map.of());
        for (String key : List.of("median", "q25", "q75", "min", "max")) {
            assertEquals(one.get(key), s.get(key), key);
        }
        for (String key : List.of("mean", "std", "variance", "range", "autocorr", "skewness", "kurtosis")) {
            assertRel((Double) one.get(key), (Double) s.get(key), 1e-12, "summary " + key);
        }
        assertEquals(one.get("count"), s.get("count"));
        assertEquals("exact", s.get("quantile_method"));
    }

    /** Rank interval [#(< v), #(<= v)] / n of v in sorted data intersects [q - eps, q + eps]. */
    static void assertWithinRank(double[] sorted, double q, double v, double eps, String what) {
        int lo = lowerBound(sorted, v);
        int hi = upperBound(sorted, v);
        double n = sorted.length;
        assertTrue(hi / n >= q - eps && lo / n <= q + eps, what + ": value " + v + " has rank ["
                + lo / n + ", " + hi / n + "], wanted " + q + " +- " + eps);
    }

    static int lowerBound(double[] a, double v) {
        int lo = 0;
        int hi = a.length;
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (a[mid] < v) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        return lo;
    }

    static int upperBound(double[] a, double v) {
        int lo = 0;
        int hi = a.length;
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (a[mid] <= v) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        return lo;
    }

    @Test
    void beyondTheBudgetQuantilesComeFromKllWithinTheReportedRankError() throws Exception {
        double[] x = ar1(400_000, 8, 0);
        double[] sorted = x.clone();
        Arrays.sort(sorted);
        StreamAccumulator.Result r = stream("summary", x, Map.of(), 50_000, 1024, 9000, 4);
        Map<?, ?> s = (Map<?, ?>) r.value();
        assertEquals("kll", s.get("quantile_method"));
        double eps = (Double) s.get("rank_error");
        assertEquals(StreamingQuantiles.rankErrorFor(1024), eps, 1e-15);
        assertTrue(eps > 0 && eps < 0.01, "rank error " + eps);
        assertWithinRank(sorted, 0.5, (Double) s.get("median"), eps, "median");
        assertWithinRank(sorted, 0.25, (Double) s.get("q25"), eps, "q25");
        assertWithinRank(sorted, 0.75, (Double) s.get("q75"), eps, "q75");
        assertEquals("kll", r.stats().get("quantile_method"));
        assertEquals(Double.toString(eps), r.stats().get("rank_error"));
        // moments stay exact in sketch mode
        assertRel(oneShot("kurtosis", x, Map.of()), (Double) s.get("kurtosis"), 1e-12, "kurtosis");
        for (String p : List.of("1", "50", "99.9")) {
            StreamAccumulator.Result pr = stream("percentile", x, Map.of("percentile", p), 50_000, 1024, 9000, 4);
            assertWithinRank(sorted, Double.parseDouble(p) / 100, (Double) pr.value(), eps, "p" + p);
            assertEquals("kll", pr.stats().get("quantile_method"));
        }
        // the ends of the distribution are exact in the sketch too
        assertEquals(sorted[0], (Double) stream("percentile", x, Map.of("percentile", "0"), 50_000, 1024, 9000, 4).value());
        assertEquals(sorted[sorted.length - 1],
                (Double) stream("percentile", x, Map.of("percentile", "100"), 50_000, 1024, 9000, 4).value());
    }

    @Test
    void nanPolicyRaiseNamesThePositionAndOmitDropsAndCounts() throws Exception {
        StreamAccumulator a = new StreamAccumulator("mean", Map.of(), NativeStatistics.KERNELS, 1, 100, 200);
        a.add(1);
        a.add(2);
        AnalysisException e = assertThrows(AnalysisException.class, () -> a.add(Double.NaN));
        assertTrue(e.getMessage().contains("data[2] is NaN"), e.getMessage());
        assertTrue(e.getMessage().contains("nan_policy=omit"), e.getMessage());

        StreamAccumulator b = new StreamAccumulator("mean", Map.of("nan_policy", "omit"), NativeStatistics.KERNELS,
                1, 100, 200);
        for (double v : new double[] {1, Double.NaN, 3, Double.POSITIVE_INFINITY, 5}) {
            b.add(v);
        }
        StreamAccumulator.Result r = b.finish();
        assertEquals(3.0, r.value());
        assertEquals("2", r.stats().get("omitted_non_finite"));
        assertThrows(AnalysisException.class, () -> new StreamAccumulator("mean", Map.of("nan_policy", "skip"),
                NativeStatistics.KERNELS, 1, 100, 200));
    }

    @Test
    void constantStreamsGiveZeroAndTooShortStreamsAreClearErrors() throws Exception {
        double[] constant = new double[10_000];
        Arrays.fill(constant, 2.5);
        // constant data: 0.0, as the one-shot kernels (the earlier engine's answer)
        for (String alg : List.of("skewness", "kurtosis", "correlation")) {
            assertEquals(0.0, stream(alg, constant, Map.of(), 0, 200, 100, 1).value(), alg);
        }
        Map<?, ?> s = (Map<?, ?>) stream("summary", constant, Map.of(), 100_000, 200, 100, 1).value();
        assertEquals(0.0, s.get("variance"));
        assertEquals(0.0, s.get("skewness"));
        assertEquals(0.0, s.get("autocorr"));
        // two points: the lag-1 autocorrelation is defined (the earlier engine: [3, 5] -> -0.5)
        assertEquals(-0.5, stream("correlation", new double[] {3, 5}, Map.of(), 0, 200, 1, 1).value());
        assertEquals(-1.0 / 42, (Double) stream("correlation", new double[] {1, 2, 4}, Map.of(), 0, 200, 2, 1)
                .value(), 1e-16);
        AnalysisException e = assertThrows(AnalysisException.class,
                () -> stream("kurtosis", new double[] {1, 2, 3}, Map.of(), 0, 200, 2, 1));
        assertTrue(e.getMessage().contains("kurtosis needs at least 4 data points, got only 3"), e.getMessage());
        e = assertThrows(AnalysisException.class, () -> stream("mean", new double[0], Map.of(), 0, 200, 2, 1));
        assertTrue(e.getMessage().contains("got no data"), e.getMessage());
        e = assertThrows(AnalysisException.class, () -> new StreamAccumulator("percentile",
                Map.of("percentile", "101"), NativeStatistics.KERNELS, 1, 0, 200));
        assertTrue(e.getMessage().contains("between 0 and 100"), e.getMessage());
        // values whose sum overflows double range: the mean is still right
        double[] huge = {1e308, 1e308, -1e308, 1e308};
        assertRel(oneShot("mean", huge, Map.of()), (Double) stream("mean", huge, Map.of(), 0, 200, 2, 1).value(),
                1e-15, "overflowing mean");
    }

    @Test
    void streamsShareTheEngineWideExactBudgetAndReleaseIt() throws Exception {
        StreamingQuantiles.Budget budget = new StreamingQuantiles.Budget(8 * 20_000);
        double[] x = ar1(15_000, 5, 0);
        StreamAccumulator a = new StreamAccumulator("median", Map.of(), NativeStatistics.KERNELS, 1, 100_000, 1024,
                budget);
        StreamAccumulator b = new StreamAccumulator("median", Map.of(), NativeStatistics.KERNELS, 1, 100_000, 1024,
                budget);
        for (double v : x) {
            a.add(v);
            b.add(v);
        }
        StreamAccumulator.Result ra = a.finish();
        StreamAccumulator.Result rb = b.finish();
        // one of them got the memory and is exact; the other switched to the sketch and says why
        long exact = List.of(ra, rb).stream().filter(r -> "exact".equals(r.stats().get("quantile_method"))).count();
        assertEquals(1, exact);
        StreamAccumulator.Result sketched = "exact".equals(ra.stats().get("quantile_method")) ? rb : ra;
        assertTrue(sketched.stats().get("kll_reason").contains("stream_exact_total_mb"), sketched.stats().toString());
        assertEquals(budget.total(), budget.free(), "every reservation returned");

        // a stream that fails or is abandoned returns its reservation too
        StreamAccumulator c = new StreamAccumulator("q1", Map.of(), NativeStatistics.KERNELS, 1, 100_000, 1024, budget);
        for (int i = 0; i < 5000; i++) { // more than one 4096-value block, so the buffer is allocated
            c.add(i);
        }
        assertTrue(budget.free() < budget.total());
        assertThrows(AnalysisException.class, () -> c.add(Double.NaN));
        c.close();
        assertEquals(budget.total(), budget.free());
    }
}
