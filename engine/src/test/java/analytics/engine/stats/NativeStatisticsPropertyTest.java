package analytics.engine.stats;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import analytics.engine.api.AnalysisException;
import analytics.engine.proto.ErrorCode;
import java.time.Duration;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** Algebraic properties, error behaviour and robustness of the native kernels. */
class NativeStatisticsPropertyTest {

    private static final List<String> NAMES = List.of("mean", "median", "std", "variance", "min",
            "max", "range", "percentile", "q1", "q3", "iqr", "mode", "skewness", "kurtosis", "count",
            "correlation", "summary");

    static Object run(String name, double[] data) throws AnalysisException {
        return run(name, data, Map.of());
    }

    static Object run(String name, double[] data, Map<String, String> params) throws AnalysisException {
        return NativeStatistics.KERNELS.get(name).compute(data, params);
    }

    static double num(String name, double[] data) throws AnalysisException {
        return (Double) run(name, data);
    }

    static double pct(double[] data, double p) throws AnalysisException {
        return (Double) run("percentile", data, Map.of("percentile", Double.toString(p)));
    }

    /** Dyadic data k/64 (|k| < 2^20): shifts by up to 1e9 and the scalings used here are exact. */
    static double[] dyadic(int n, long seed, int distinct) {
        SplittableRandom r = new SplittableRandom(seed);
        double[] d = new double[n];
        for (int i = 0; i < n; i++) {
            // skewed on purpose (a square), so skewness is far from 0
            long k = r.nextInt(distinct);
            d[i] = (double) (k * k / distinct - 300) / 64.0;
        }
        return d;
    }

    static void shuffle(double[] d, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        for (int i = d.length - 1; i > 0; i--) {
            int j = r.nextInt(i + 1);
            double t = d[i];
            d[i] = d[j];
            d[j] = t;
        }
    }

    static void close(double want, double got, double rel, String what) {
        if (!(Math.abs(got - want) <= rel * Math.abs(want))) {
            fail(what + ": expected " + want + " got " + got);
        }
    }

    // ------------------------------------------------------------------ registry

    @Test
    void registryHasExactlyTheSeventeenInOrderAndIsUnmodifiable() {
        assertEquals(NAMES, List.copyOf(NativeStatistics.KERNELS.keySet()));
        assertThrows(UnsupportedOperationException.class,
                () -> NativeStatistics.KERNELS.put("x", (d, p) -> 0.0));
        Map<String, Integer> want = new HashMap<>();
        NAMES.forEach(n -> want.put(n, 1));
        want.put("std", 2);
        want.put("variance", 2);
        want.put("summary", 2);
        want.put("skewness", 3);
        want.put("correlation", 2);
        want.put("kurtosis", 4);
        for (String n : NAMES) {
            assertEquals(want.get(n), NativeStatistics.minPoints(n), n);
        }
        assertThrows(IllegalArgumentException.class, () -> NativeStatistics.minPoints("kmeans"));
    }

    @Test
    void tooFewPointsErrorsSayHowManyAreNeeded() {
        for (String n : NAMES) {
            int need = NativeStatistics.minPoints(n);
            for (int have = 0; have < need; have++) {
                double[] d = new double[have];
                Arrays.fill(d, 1.5);
                int h = have;
                AnalysisException e = assertThrows(AnalysisException.class, () -> run(n, d), n);
                assertEquals(ErrorCode.INVALID_ARGUMENT, e.code());
                assertEquals(n + " needs at least " + need + " data point" + (need == 1 ? "" : "s")
                        + ", got " + h, e.getMessage());
            }
        }
        AnalysisException e = assertThrows(AnalysisException.class,
                () -> run("skewness", new double[] {1, 2}));
        assertEquals("skewness needs at least 3 data points, got 2", e.getMessage());
    }

    @Test
    void resultTypes() throws Exception {
        double[] d = {1, 2, 3, 4, 5, 7};
        for (String n : NAMES) {
            Object r = run(n, d);
            switch (n) {
                case "count" -> assertEquals(6L, r);
                case "mode", "summary" -> assertInstanceOf(Map.class, r);
                default -> assertInstanceOf(Double.class, r, n);
            }
        }
    }

    // ------------------------------------------------------------------ numerics

    @Test
    void largeOffsetVarianceIsExact() throws Exception {
        double[] d = {1e9 + 1, 1e9 + 2, 1e9 + 3};
        assertEquals(1.0, num("variance", d), 0.0);
        assertEquals(1.0, num("std", d), 0.0);
        assertEquals(1e9 + 2, num("mean", d), 0.0);
        @SuppressWarnings("unchecked")
        Map<String, Object> s = (Map<String, Object>) run("summary", d);
        assertEquals(1.0, (Double) s.get("variance"), 0.0);
        // the naive one-pass formula E[x^2] - E[x]^2 gives 0 or garbage here
        double sum = 0;
        double sq = 0;
        for (double x : d) {
            sum += x;
            sq += x * x;
        }
        assertTrue((sq - sum * sum / 3) / 2 != 1.0, "the test data must defeat the naive formula");
    }

    @Test
    void constantDataGivesZeroSpreadAndZeroShapeStatistics() throws Exception {
        // the earlier engine answered 0.0 for these on constant data; v7 clients rely on it
        double[] d = new double[50];
        Arrays.fill(d, 0.1);
        assertEquals(0.0, num("variance", d), 1e-30);
        for (String n : List.of("skewness", "kurtosis", "correlation")) {
            assertEquals(0.0, num(n, d), 0.0, n);
        }
        @SuppressWarnings("unchecked")
        Map<String, Object> s = (Map<String, Object>) run("summary", d);
        assertEquals(0.0, s.get("autocorr"));
        assertEquals(0.0, s.get("skewness"));
        assertEquals(0.0, s.get("kurtosis"));
        assertEquals(0.1, (Double) s.get("median"), 0.0);
    }

    @Test
    void overflowIsAnErrorNotInfinity() {
        double[] d = {1e300, -1e300, 5e299, 2e300};
        AnalysisException e = assertThrows(AnalysisException.class, () -> run("variance", d));
        assertTrue(e.getMessage().startsWith("variance overflows double precision"), e.getMessage());
    }

    // ------------------------------------------------------------------ percentile param

    @Test
    void percentileParam() throws Exception {
        double[] d = {5, 1, 4, 2, 3};
        assertEquals(3.0, (Double) run("percentile", d, Map.of()), 0.0);
        assertEquals(1.4, (Double) run("percentile", d, Map.of("percentile", "10")), 1e-15);
        assertEquals(1.4, (Double) run("percentile", d, Map.of("percentile", " 1e1 ")), 1e-15);
        assertEquals(5.0, (Double) run("percentile", d, Map.of("percentile", "100.0")), 0.0);
        for (String bad : List.of("abc", "-0.5", "100.0001", "NaN", "Infinity", "", "1,5", "0x1p3", "5d")) {
            AnalysisException e = assertThrows(AnalysisException.class,
                    () -> run("percentile", d, Map.of("percentile", bad)), bad);
            assertEquals("param 'percentile' must be a number between 0 and 100, got '" + bad + "'",
                    e.getMessage());
        }
    }

    // ------------------------------------------------------------------ properties

    @Test
    void permutationInvariance() throws Exception {
        for (double[] base : List.of(dyadic(10_001, 1, 5000), dyadic(4_000, 2, 7),
                StatsFixtures.dataset("skewed_1000"))) {
            Map<String, Object> ref = new HashMap<>();
            for (String n : NAMES) {
                if (!n.equals("correlation") && !n.equals("summary")) {
                    ref.put(n, run(n, base));
                }
            }
            for (long seed = 11; seed < 14; seed++) {
                double[] p = base.clone();
                shuffle(p, seed);
                for (String n : ref.keySet()) {
                    Object got = run(n, p);
                    if (List.of("mean", "std", "variance", "skewness", "kurtosis").contains(n)) {
                        close((Double) ref.get(n), (Double) got, 1e-12, n + " seed " + seed);
                    } else {
                        assertEquals(ref.get(n), got, n + " (exact) seed " + seed);
                    }
                }
            }
        }
    }

    @Test
    void shiftBehaviour() throws Exception {
        double[] x = dyadic(3_001, 3, 400);
        for (double c : new double[] {1e6, -1e9, 0.375}) {
            double[] y = x.clone();
            for (int i = 0; i < y.length; i++) {
                y[i] += c; // exact for dyadic x
            }
            double scale = Math.abs(c) + 100;
            for (String n : List.of("mean", "median", "min", "max", "q1", "q3")) {
                assertEquals(num(n, x) + c, num(n, y), 1e-13 * scale, n + " shifts by " + c);
            }
            for (double p : new double[] {0, 12.5, 50, 99.9, 100}) {
                assertEquals(pct(x, p) + c, pct(y, p), 1e-13 * scale, "percentile " + p);
            }
            for (String n : List.of("std", "variance", "skewness", "kurtosis", "range", "iqr")) {
                close(num(n, x), num(n, y), 1e-12, n + " invariant under shift " + c);
            }
            assertEquals(num("correlation", x), num("correlation", y), 1e-12, "correlation");
        }
    }

    @Test
    void scaleBehaviour() throws Exception {
        double[] x = dyadic(2_500, 4, 300);
        for (double a : new double[] {3.0, 0.125, -2.5, -1.0}) {
            double[] y = x.clone();
            for (int i = 0; i < y.length; i++) {
                y[i] *= a; // exact for dyadic x
            }
            double abs = Math.abs(a);
            close(a * num("mean", x), num("mean", y), 1e-12, "mean");
            close(abs * num("std", x), num("std", y), 1e-12, "std");
            close(a * a * num("variance", x), num("variance", y), 1e-12, "variance");
            close(Math.signum(a) * num("skewness", x), num("skewness", y), 1e-12, "skewness");
            close(num("kurtosis", x), num("kurtosis", y), 1e-12, "kurtosis");
            assertEquals(num("correlation", x), num("correlation", y), 1e-12, "correlation");
            close(abs * num("range", x), num("range", y), 1e-15, "range");
            close(abs * num("iqr", x), num("iqr", y), 1e-13, "iqr");
            close(a * num("median", x), num("median", y), 1e-15, "median");
            for (double p : new double[] {0, 12.5, 50, 99.9, 100}) {
                double mirrored = a > 0 ? p : 100 - p;
                double want = a * pct(x, mirrored);
                assertEquals(want, pct(y, p), 1e-13 * Math.abs(want) + 1e-13, "percentile " + p + " a=" + a);
            }
            assertEquals(a * (a > 0 ? num("min", x) : num("max", x)), num("min", y), 0.0, "min");
            assertEquals(a * (a > 0 ? num("max", x) : num("min", x)), num("max", y), 0.0, "max");
        }
    }

    @Test
    void inputIsNeverModified() throws Exception {
        double[] d = dyadic(5_000, 5, 50);
        shuffle(d, 99);
        double[] before = d.clone();
        for (String n : NAMES) {
            run(n, d);
            run(n, d, Map.of("percentile", "37.5"));
            assertArrayEquals(before, d, n + " modified its input");
        }
    }

    @Test
    @SuppressWarnings("unchecked")
    void summaryAgreesWithTheSingleKernels() throws Exception {
        for (double[] d : List.of(dyadic(1_001, 6, 900), StatsFixtures.dataset("tiny_variance"),
                StatsFixtures.dataset("large_offset"), StatsFixtures.dataset("end_outlier"),
                StatsFixtures.dataset("four"))) {
            Map<String, Object> s = (Map<String, Object>) run("summary", d);
            assertEquals(List.of("count", "mean", "median", "std", "variance", "min", "max", "range",
                    "q25", "q75", "autocorr", "skewness", "kurtosis"), List.copyOf(s.keySet()));
            assertEquals((long) d.length, s.get("count"));
            for (String n : List.of("mean", "median", "std", "variance", "min", "max", "range",
                    "skewness", "kurtosis")) {
                assertEquals(run(n, d), s.get(n), n + " (bit-identical)");
            }
            assertEquals(run("q1", d), s.get("q25"));
            assertEquals(run("q3", d), s.get("q75"));
            assertEquals(num("correlation", d), (Double) s.get("autocorr"), 1e-12);
        }
    }

    // ------------------------------------------------------------------ selection and mode

    @Test
    void selectionMatchesSortingOnRandomAndAdversarialInputs() throws Exception {
        SplittableRandom r = new SplittableRandom(42);
        for (int trial = 0; trial < 300; trial++) {
            int n = 1 + r.nextInt(trial < 200 ? 60 : 3000);
            int distinct = 1 + r.nextInt(trial % 3 == 0 ? 3 : 1000);
            double[] d = new double[n];
            for (int i = 0; i < n; i++) {
                d[i] = r.nextInt(distinct) - distinct / 2.0;
            }
            checkOrderStats(d, r.nextDouble() * 100);
        }
        int n = 100_001;
        double[] sorted = new double[n];
        double[] reversed = new double[n];
        double[] organ = new double[n];
        double[] saw = new double[n];
        for (int i = 0; i < n; i++) {
            sorted[i] = i;
            reversed[i] = n - i;
            organ[i] = Math.min(i, n - i);
            saw[i] = i % 17;
        }
        for (double[] d : List.of(sorted, reversed, organ, saw, medianOf3Killer(n))) {
            checkOrderStats(d, 50);
            checkOrderStats(d, 12.5);
        }
    }

    /** Musser's median-of-3 killer sequence (drives plain median-of-3 quickselect quadratic). */
    static double[] medianOf3Killer(int n) {
        int k = n / 2;
        double[] d = new double[2 * k + (n & 1)];
        for (int i = 1; i <= k; i++) {
            if ((i & 1) == 1) {
                d[i - 1] = i;
                d[i] = k + i;
            }
            d[k + i - 1] = 2 * i;
        }
        if ((n & 1) == 1) {
            d[n - 1] = n;
        }
        return d;
    }

    static void checkOrderStats(double[] d, double p) throws Exception {
        double[] s = d.clone();
        Arrays.sort(s);
        int n = s.length;
        double med = (n & 1) == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
        assertEquals(med, num("median", d), 0.0, "median n=" + n);
        double vi = (n - 1) * (p / 100.0);
        int lo = (int) Math.floor(vi);
        int hi = Math.min(lo + 1, n - 1);
        double want = Selection.lerp(s[lo], s[hi], vi - Math.floor(vi));
        assertEquals(want, pct(d, p), 0.0, "percentile " + p + " n=" + n);
        assertEquals(s[0], num("min", d), 0.0);
        assertEquals(s[n - 1], num("max", d), 0.0);
    }

    @Test
    void largeAdversarialInputsStayFast() {
        double[] killer = medianOf3Killer(1_000_001);
        double[] organ = new double[1_000_000];
        for (int i = 0; i < organ.length; i++) {
            organ[i] = Math.min(i, organ.length - i);
        }
        // quadratic behaviour would take minutes here; linear or n log n takes milliseconds
        assertTimeoutPreemptively(Duration.ofSeconds(20), () -> {
            assertEquals(500_001.0, num("median", killer), 0.0);
            assertEquals(250_000.0, (Double) ((Map<?, ?>) run("summary", organ)).get("median"), 0.0);
            assertEquals(250_000.0, num("iqr", organ), 1e-9);
        });
    }

    /** Mode by brute force: a tree map of bin to (count, last raw value), in input order. */
    static Map<String, Object> bruteMode(double[] d) {
        java.util.TreeMap<Double, double[]> bins = new java.util.TreeMap<>();
        for (double x : d) {
            double[] e = bins.computeIfAbsent(NativeStatistics.modeBin(x), k -> new double[2]);
            e[0]++;
            e[1] = x;
        }
        int best = 0;
        for (double[] e : bins.values()) {
            best = Math.max(best, (int) e[0]);
        }
        List<Double> modes = new java.util.ArrayList<>();
        for (double[] e : bins.values()) {
            if ((int) e[0] == best) {
                modes.add(e[1]);
            }
        }
        Map<String, Object> m = new java.util.LinkedHashMap<>();
        m.put("modes", modes);
        m.put("count", (long) modes.size());
        m.put("frequency", (long) best);
        m.put("is_multimodal", modes.size() > 1);
        m.put("data_size", (long) d.length);
        return m;
    }

    @Test
    void modeWithManyDistinctValuesTakesTheSortingPathAndAgrees() throws Exception {
        SplittableRandom r = new SplittableRandom(77);
        // > 2^16 distinct values (beyond the hash table), negative and positive, a few ties
        double[] d = new double[300_000];
        for (int i = 0; i < d.length; i++) {
            d[i] = (r.nextDouble() - 0.5) * 1e4;
        }
        for (double v : new double[] {-1234.5678901, 42.0000001, -0.0000004, 9999.25}) {
            for (int k = 0; k < 4; k++) {
                d[r.nextInt(d.length)] = v + k * 1e-8; // all round to the same 6-decimal value
            }
        }
        shuffle(d, 5);
        Map<String, Object> want = bruteMode(d);
        assertEquals(want, run("mode", d));
        assertTrue((Long) want.get("frequency") >= 4);
        // all distinct: every value is a mode
        double[] e = new double[100_000];
        for (int i = 0; i < e.length; i++) {
            e[i] = (i - 50_000) * 0.001;
        }
        shuffle(e, 6);
        Map<?, ?> m = (Map<?, ?>) run("mode", e);
        assertEquals(bruteMode(e), m);
        assertEquals(100_000L, m.get("count"));
        // duplicate-heavy (the hash path) agrees with brute force too, and with values jittered
        // inside their bins the reported mode is the last raw value of the bin
        double[] f = new double[200_000];
        for (int i = 0; i < f.length; i++) {
            f[i] = r.nextInt(3000) * 0.25 - 300;
        }
        assertEquals(bruteMode(f), run("mode", f));
        double[] g = new double[200_000];
        for (int i = 0; i < g.length; i++) {
            g[i] = r.nextInt(40) * 0.25 - 5 + r.nextInt(9) * 4e-8;
        }
        Map<String, Object> wantG = bruteMode(g);
        assertEquals(wantG, run("mode", g));
        assertEquals(1L, wantG.get("count"), "the test data must have a single mode");
    }

    @Test
    @SuppressWarnings("unchecked")
    void modeBinsHalfAwayFromZeroAndReportsTheLastRawValue() throws Exception {
        // the earlier engine's mode: bins of x*1e6 rounded half away from zero, each mode the last
        // raw value seen in its bin
        Map<String, Object> m = (Map<String, Object>) run("mode",
                new double[] {-0.0, 0.0, -4e-7, 7.0000004, 6.9999996, 7, 3});
        assertEquals(List.of(-4e-7, 7.0), m.get("modes"));
        assertEquals(2L, m.get("count"));
        assertEquals(3L, m.get("frequency"));
        assertEquals(true, m.get("is_multimodal"));
        assertEquals(7L, m.get("data_size"));
        // half away from zero (not numpy's half to even): 0.5e-6 -> 1e-6, 2.5e-6 -> 3e-6
        assertEquals(1e-6, NativeStatistics.modeBin(0.5e-6), 0.0);
        assertEquals(-1e-6, NativeStatistics.modeBin(-0.5e-6), 0.0);
        assertEquals(3e-6, NativeStatistics.modeBin(2.5e-6), 0.0);
        assertEquals(0L, Double.doubleToRawLongBits(NativeStatistics.modeBin(-4e-7)));
        assertEquals(1e300, NativeStatistics.modeBin(1e300), 0.0);
        Map<String, Object> v7 = (Map<String, Object>) run("mode", new double[] {2.5e-6, 2.5e-6, 3e-6});
        assertEquals(List.of(3e-6), v7.get("modes"));
        assertEquals(3L, v7.get("frequency"));
        Map<String, Object> single = (Map<String, Object>) run("mode", new double[] {2.5});
        assertEquals(List.of(2.5), single.get("modes"));
        assertEquals(false, single.get("is_multimodal"));
    }

    // ------------------------------------------------------------------ bucketed selection

    /** Large inputs of many shapes for {@link BucketSelection}; each is a fresh array. */
    static Map<String, double[]> largeShapes(int n, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        Map<String, double[]> m = new java.util.LinkedHashMap<>();
        double[] d;
        d = new double[n];
        for (int i = 0; i < n; i++) {
            d[i] = r.nextDouble();
        }
        m.put("uniform", d);
        java.util.Random g = new java.util.Random(seed);
        d = new double[n];
        for (int i = 0; i < n; i++) {
            d[i] = g.nextGaussian() * 3 + 1;
        }
        m.put("normal", d);
        d = new double[n];
        for (int i = 0; i < n; i++) {
            d[i] = r.nextInt(5) - 2;
        }
        m.put("fiveValues", d);
        d = new double[n];
        for (int i = 0; i < n; i++) {
            // half exactly 1.0 (one huge bucket of equal values), the rest spread around it
            d[i] = r.nextBoolean() ? 1.0 : r.nextDouble() * 2;
        }
        m.put("halfOnes", d);
        d = new double[n];
        Arrays.fill(d, 3.25);
        m.put("allEqual", d);
        d = new double[n];
        Arrays.fill(d, -0.0);
        m.put("allNegativeZero", d);
        d = new double[n];
        for (int i = 0; i < n; i++) {
            int k = r.nextInt(8);
            d[i] = k < 3 ? -0.0 : k < 6 ? 0.0 : k == 6 ? Double.MIN_VALUE : -Double.MIN_VALUE;
        }
        m.put("signedZeros", d);
        d = new double[n];
        for (int i = 0; i < n; i++) {
            d[i] = r.nextBoolean() ? -0.0 : 0.0;
        }
        m.put("onlyZeros", d);
        d = new double[n];
        for (int i = 0; i < n; i++) {
            // a zero is the minimum (its sign depends on which zero the min pass meets first)
            int k = r.nextInt(4);
            d[i] = k == 0 ? -0.0 : k == 1 ? 0.0 : r.nextDouble();
        }
        m.put("zerosAndPositives", d);
        d = new double[n];
        for (int i = 0; i < n; i++) {
            int k = r.nextInt(4);
            d[i] = k == 0 ? 0.0 : k == 1 ? -0.0 : -r.nextDouble();
        }
        m.put("negativesAndZeros", d);
        d = new double[n];
        for (int i = 0; i < n; i++) {
            double u = r.nextDouble();
            switch (r.nextInt(6)) {
                case 0 -> d[i] = u * 1e300;
                case 1 -> d[i] = -u * 1e300;
                case 2 -> d[i] = u * 1e-300;
                case 3 -> d[i] = -u * Double.MIN_NORMAL;
                case 4 -> d[i] = r.nextBoolean() ? Double.MAX_VALUE : -Double.MAX_VALUE;
                default -> d[i] = Double.MIN_VALUE * r.nextInt(100);
            }
        }
        m.put("hugeAndTiny", d);
        d = new double[n];
        for (int i = 0; i < n; i++) {
            d[i] = -Math.exp(g.nextGaussian() * 4);
        }
        m.put("negativeOnly", d);
        d = new double[n];
        for (int i = 0; i < n; i++) {
            // within a few thousand ulps of 1e6: every level of buckets is needed
            d[i] = 1e6 + Math.ulp(1e6) * r.nextInt(5000);
        }
        m.put("narrowUlps", d);
        d = new double[n];
        for (int i = 0; i < n; i++) {
            // narrow cluster plus outliers that stretch the key range
            d[i] = i % 1000 == 0 ? (r.nextBoolean() ? 1e50 : -1e50) : 7 + r.nextDouble() * 1e-9;
        }
        m.put("clusterWithOutliers", d);
        d = new double[n];
        for (int i = 0; i < n; i++) {
            d[i] = i * 0.5 - 100;
        }
        m.put("sorted", d);
        d = new double[n];
        for (int i = 0; i < n; i++) {
            d[i] = n - i;
        }
        m.put("reverseSorted", d);
        m.put("medianOf3Killer", Arrays.stream(medianOf3Killer(n)).map(x -> x - n / 3.0).toArray());
        return m;
    }

    /** Every rank summary, median, iqr, q1/q3 and percentile (at the p below) read for n values. */
    static int[] ranksUsedByKernels(int n, double[] ps) {
        java.util.TreeSet<Integer> set = new java.util.TreeSet<>();
        set.add(n / 2);
        if ((n & 1) == 0) {
            set.add(n / 2 - 1);
        }
        for (double p : ps) {
            for (int k : Selection.quantileRanks(n, p / 100.0)) {
                set.add(k);
            }
        }
        return set.stream().mapToInt(Integer::intValue).toArray();
    }

    private static final double[] PCTS = {0, 0.1, 1, 12.5, 25, 33.3, 50, 66.7, 75, 90, 99, 99.99, 100};

    /** The quantile from a sorted array with the kernels' interpolation (numpy 'linear'). */
    static double sortedQuantile(double[] s, double q) {
        int n = s.length;
        double vi = (n - 1) * q;
        int lo = (int) Math.floor(vi);
        if (vi >= n - 1) {
            return s[n - 1];
        }
        return Selection.lerp(s[lo], s[lo + 1], vi - Math.floor(vi));
    }

    @Test
    void bucketedSelectionEqualsSortingOnLargeInputsOfManyShapes() throws Exception {
        long seed = 13;
        for (int n : new int[] {BucketSelection.MIN_N, BucketSelection.MIN_N + 1, 65_537, 300_000}) {
            for (Map.Entry<String, double[]> e : largeShapes(n, seed++).entrySet()) {
                String what = e.getKey() + " n=" + n;
                double[] d = e.getValue();
                double[] before = d.clone();
                double[] s = d.clone();
                Arrays.sort(s);
                // every rank the kernels use, plus random rank sets (one rank, several, the ends)
                SplittableRandom r = new SplittableRandom(seed);
                List<int[]> rankSets = new java.util.ArrayList<>();
                rankSets.add(ranksUsedByKernels(n, PCTS));
                rankSets.add(new int[] {0, n - 1});
                for (int t = 0; t < 4; t++) {
                    rankSets.add(r.ints(1 + r.nextInt(6), 0, n).sorted().distinct().toArray());
                }
                for (int[] ranks : rankSets) {
                    double[] got = BucketSelection.valuesAt(d, ranks);
                    // today's path: introselect on a full copy
                    double[] c = d.clone();
                    Selection.selectAll(c, 0, n - 1, ranks, 0, ranks.length);
                    for (int i = 0; i < ranks.length; i++) {
                        // delta 0: bit-identical, except that -0.0 and 0.0 count as equal
                        assertEquals(s[ranks[i]], got[i], 0.0, what + " rank " + ranks[i]);
                        assertEquals(c[ranks[i]], got[i], 0.0, what + " rank " + ranks[i] + " (introselect)");
                    }
                }
                assertArrayEquals(before, d, what + ": the input must not be modified");

                // the kernels built on it: same interpolation rules as on the sorted array
                double med = (n & 1) == 1 ? s[n / 2] : Selection.midpoint(s[n / 2 - 1], s[n / 2]);
                assertEquals(med, num("median", d), 0.0, what + " median");
                for (double p : PCTS) {
                    assertEquals(sortedQuantile(s, p / 100.0), pct(d, p), 0.0, what + " percentile " + p);
                }
                double q1 = sortedQuantile(s, 0.25);
                double q3 = sortedQuantile(s, 0.75);
                assertEquals(q1, num("q1", d), 0.0, what + " q1");
                assertEquals(q3, num("q3", d), 0.0, what + " q3");
                assertEquals(q3 - q1, num("iqr", d), 0.0, what + " iqr");
                if (!e.getKey().equals("hugeAndTiny")) { // its moments overflow: summary is an error
                    Map<?, ?> sum = (Map<?, ?>) run("summary", d);
                    assertEquals(med, (Double) sum.get("median"), 0.0, what + " summary median");
                    assertEquals(q1, (Double) sum.get("q25"), 0.0, what + " summary q25");
                    assertEquals(q3, (Double) sum.get("q75"), 0.0, what + " summary q75");
                }
                assertArrayEquals(before, d, what + ": the kernels must not modify the input");
            }
        }
    }

    @Test
    void bucketedSelectionHandlesInfinitiesAndAMillionValues() throws Exception {
        int n = 1_000_000;
        SplittableRandom r = new SplittableRandom(1313);
        double[] d = new double[n];
        for (int i = 0; i < n; i++) {
            int k = r.nextInt(10);
            d[i] = k == 0 ? Double.POSITIVE_INFINITY : k == 1 ? Double.NEGATIVE_INFINITY : r.nextDouble() - 0.5;
        }
        double[] s = d.clone();
        Arrays.sort(s);
        int[] ranks = {0, 1, n / 10 - 1, n / 10, n / 4, n / 2 - 1, n / 2, 3 * n / 4, n - n / 10, n - 1};
        double[] got = BucketSelection.valuesAt(d, ranks);
        for (int i = 0; i < ranks.length; i++) {
            assertEquals(s[ranks[i]], got[i], 0.0, "rank " + ranks[i]);
        }
        for (Map.Entry<String, double[]> e : largeShapes(n, 77).entrySet()) {
            if (!List.of("normal", "fiveValues", "signedZeros", "zerosAndPositives", "narrowUlps")
                    .contains(e.getKey())) {
                continue; // the other shapes run at smaller n above; these cover the 10^6 case
            }
            double[] x = e.getValue();
            double[] xs = x.clone();
            Arrays.sort(xs);
            int[] used = ranksUsedByKernels(n, PCTS);
            double[] v = BucketSelection.valuesAt(x, used);
            for (int i = 0; i < used.length; i++) {
                assertEquals(xs[used[i]], v[i], 0.0, e.getKey() + " rank " + used[i]);
            }
        }
    }
}
