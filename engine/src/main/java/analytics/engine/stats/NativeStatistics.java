package analytics.engine.stats;

import analytics.engine.api.AnalysisException;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.regex.Pattern;

/**
 * The seventeen native statistics of the v7 contract, with numpy/scipy semantics.
 *
 * <p>Reference semantics (checked against {@code tests/fixtures/stats_fixtures.json}, produced by
 * {@code tests/fixtures/generate_stats_fixtures.py}; moment statistics there are computed exactly
 * with integer arithmetic, order statistics with numpy):
 * <ul>
 *   <li>{@code mean} = {@code np.mean}, bit-identical (numpy's pairwise summation order).
 *       {@code variance}/{@code std} = {@code np.var/np.std(ddof=1)}: two-pass in numpy's order,
 *       plus the "corrected two-pass" term that removes the rounding error of the mean. For
 *       ordinary data the term is below half an ulp and the result is numpy's bit for bit; for
 *       data whose spread is only thousands of ulps of their mean (1 + k·1e-12) numpy is off by
 *       ~1e-10 relative and this is exact to ~1e-16. Needs 2 points.
 *   <li>{@code min}, {@code max}, {@code range} = max - min, {@code count} (a Long).
 *   <li>{@code median} = {@code np.median}; {@code percentile} = {@code np.percentile(x, p)}
 *       (method 'linear'), param {@code percentile} in [0, 100], default 50;
 *       {@code q1}/{@code q3} = percentile 25/75, {@code iqr} = q3 - q1. Order statistics come from
 *       introselect on one private copy, or from {@link BucketSelection} without a full copy
 *       from 16 384 values (see {@link Selection#valuesAt}); the caller's array is never
 *       modified.
 *   <li>{@code mode} (the earlier engine's binning, kept for v7 clients): values are binned by
 *       x·1e6 rounded half <em>away from zero</em> (-0.0 counts as 0.0; a value too large to
 *       scale is already integral and is its own bin); each mode is reported as the <em>last raw
 *       value</em> seen in its bin, so [2.5e-6, 2.5e-6, 3e-6] gives modes [3e-6], frequency 3;
 *       result {@code {modes, count, frequency, is_multimodal, data_size}}, modes ascending.
 *   <li>{@code skewness} = {@code scipy.stats.skew(x, bias=False)} (needs 3 points),
 *       {@code kurtosis} = {@code scipy.stats.kurtosis(x, bias=False)} (excess, needs 4), from
 *       central moments corrected for the rounding of the mean the same way (see
 *       {@link #centralMoments}). Where scipy returns NaN because the data are (numerically)
 *       constant — m2 &lt;= (1e-15·mean)^2, scipy's own test — the result is 0.0, as the earlier
 *       engine answered v7 clients.
 *   <li>{@code correlation}: lag-1 autocorrelation with the <em>global</em> mean (the earlier
 *       engine's formula): sum_{i&lt;n-1} (x_i - m)(x_{i+1} - m) / sum (x_i - m)^2, needs 2 points
 *       ([1, 2, 4] gives -1/42, [3, 5] gives -0.5); 0.0 for constant data.
 *   <li>{@code summary}: count, mean, median, std, variance, min, max, range, q25, q75, autocorr
 *       (as {@code correlation}), skewness, kurtosis (the last two null with too few points, 0.0
 *       for constant data, null beyond double range); needs 2 points. The mean pass, a fused min/max pass, then one fused pass for all central moments
 *       and the lag products;
 *       median/q25/q75 placed by a single multi-rank selection.
 * </ul>
 * Scalars are returned as {@link Double}, counts as {@link Long}. A result that overflows the
 * double range (e.g. the variance of values near 1e300) is an error, never Infinity.
 */
public final class NativeStatistics {
    private NativeStatistics() {
    }

    private static final Map<String, Integer> MIN_POINTS;
    public static final Map<String, NativeKernel> KERNELS;

    static {
        Map<String, Integer> mp = new LinkedHashMap<>();
        Map<String, NativeKernel> k = new LinkedHashMap<>();
        reg(k, mp, "mean", 1, NativeStatistics::mean);
        reg(k, mp, "median", 1, NativeStatistics::median);
        reg(k, mp, "std", 2, NativeStatistics::std);
        reg(k, mp, "variance", 2, NativeStatistics::variance);
        reg(k, mp, "min", 1, (d, p) -> Summation.min(d));
        reg(k, mp, "max", 1, (d, p) -> Summation.max(d));
        reg(k, mp, "range", 1, (d, p) -> {
            double[] mm = Summation.minMax(d);
            return mm[1] - mm[0];
        });
        reg(k, mp, "percentile", 1, (d, p) -> quantile(d, percentileParam(p) / 100.0));
        reg(k, mp, "q1", 1, (d, p) -> quantile(d, 0.25));
        reg(k, mp, "q3", 1, (d, p) -> quantile(d, 0.75));
        reg(k, mp, "iqr", 1, NativeStatistics::iqr);
        reg(k, mp, "mode", 1, Mode::compute);
        reg(k, mp, "skewness", 3, NativeStatistics::skewness);
        reg(k, mp, "kurtosis", 4, NativeStatistics::kurtosis);
        reg(k, mp, "count", 1, (d, p) -> (long) d.length);
        reg(k, mp, "correlation", 2, NativeStatistics::correlation);
        reg(k, mp, "summary", 2, NativeStatistics::summary);
        MIN_POINTS = Collections.unmodifiableMap(mp);
        KERNELS = Collections.unmodifiableMap(k);
    }

    /** Kernel body: data already checked for length and finiteness. */
    @FunctionalInterface
    private interface Body {
        Object apply(double[] data, Map<String, String> params) throws AnalysisException;
    }

    private static void reg(Map<String, NativeKernel> kernels, Map<String, Integer> minPoints,
                            String name, int min, Body body) {
        minPoints.put(name, min);
        kernels.put(name, (data, params) -> {
            if (data == null || data.length < min) {
                int got = data == null ? 0 : data.length;
                throw AnalysisException.invalid(name + " needs at least " + min + " data point"
                        + (min == 1 ? "" : "s") + ", got " + got);
            }
            Object result = body.apply(data, params == null ? Map.of() : params);
            checkFinite(name, result);
            return result;
        });
    }

    /**
     * Drops the order statistics' per-thread working memory (histograms, working copies); the idle trim
     * calls it before collecting, so a burst's call threads do not keep it (see {@code Scratch}).
     */
    public static void releaseWorkingMemory() {
        Scratch.release();
    }

    /** Minimum number of (finite) data points the named algorithm needs. */
    public static int minPoints(String name) {
        Integer n = MIN_POINTS.get(name);
        if (n == null) {
            throw new IllegalArgumentException("not a native statistic: " + name);
        }
        return n;
    }

    private static void checkFinite(String name, Object result) throws AnalysisException {
        if (result instanceof Double d) {
            if (!Double.isFinite(d)) {
                throw overflow(name);
            }
        } else if (result instanceof Map<?, ?> m) {
            for (Object v : m.values()) {
                if (v instanceof Double d && !Double.isFinite(d)) {
                    throw overflow(name);
                }
            }
        }
    }

    private static AnalysisException overflow(String name) {
        return AnalysisException.invalid(name + " overflows double precision for these data "
                + "(values too large in magnitude)");
    }

    // ---------------------------------------------------------------- moments

    static double meanOf(double[] d) {
        int n = d.length;
        double s = Summation.sum(d, 0, n);
        if (Double.isInfinite(s)) {
            // the running sum overflowed although every value is finite: average scaled values
            double scale = Moments.OVERFLOW_SCALE;
            double[] tmp = new double[n];
            for (int i = 0; i < n; i++) {
                tmp[i] = d[i] * scale;
            }
            return Summation.sum(tmp, 0, n) / n / scale;
        }
        return s / n;
    }

    private static Object mean(double[] d, Map<String, String> p) {
        return meanOf(d);
    }

    /** Corrected two-pass sample variance (see {@link Summation#deviations}). */
    private static double varianceOf(double[] d) {
        int n = d.length;
        double m = meanOf(d);
        double[] s = new double[2];
        Summation.deviations(d, m, s);
        return (s[1] - s[0] * s[0] / n) / (n - 1);
    }

    /**
     * Central moments m2, m3, m4 (population, divided by n) from the sums of powers of d = x - m
     * about the rounded mean m, shifted exactly to the true mean m + delta, delta = mean(d).
     * delta is the rounding error of m, so for ordinary data these are scipy's values bit for bit;
     * when the spread is only thousands of ulps of the mean (and for near-symmetric data, where
     * m3 is tiny) the shift is what keeps skewness/kurtosis right instead of rounding noise.
     */
    static double[] centralMoments(int n, double[] s) {
        double delta = s[0] / n;
        double r2 = s[1] / n;
        double r3 = s[2] / n;
        double r4 = s[3] / n;
        double dd = delta * delta;
        double m2 = r2 - dd;
        double m3 = r3 - 3 * delta * r2 + 2 * dd * delta;
        double m4 = r4 - 4 * delta * r3 + 6 * dd * r2 - 3 * dd * dd;
        return new double[] {m2, m3, m4};
    }

    private static Object variance(double[] d, Map<String, String> p) {
        return varianceOf(d);
    }

    private static Object std(double[] d, Map<String, String> p) {
        return Math.sqrt(varianceOf(d));
    }

    private static Double finiteOrNull(double v) {
        return Double.isFinite(v) ? v : null;
    }

    private static Object skewness(double[] d, Map<String, String> p) {
        int n = d.length;
        double m = meanOf(d);
        double[] s = new double[Summation.K_MOMENTS];
        Summation.moments(d, m, s);
        double[] c = centralMoments(n, s);
        double v = Moments.skewness(n, c[0], c[1], m);
        return Double.isNaN(v) ? 0.0 : v; // constant data: 0.0, as the earlier engine answered
    }

    private static Object kurtosis(double[] d, Map<String, String> p) {
        int n = d.length;
        double m = meanOf(d);
        double[] s = new double[Summation.K_MOMENTS];
        Summation.moments(d, m, s);
        double[] c = centralMoments(n, s);
        double v = Moments.kurtosis(n, c[0], c[2], m);
        return Double.isNaN(v) ? 0.0 : v; // constant data: 0.0, as the earlier engine answered
    }

    // ---------------------------------------------------------------- lag-1 autocorrelation

    /**
     * Lag-1 autocorrelation with the global mean m (the earlier engine's definition, which v7
     * clients rely on): sum_{i<n-1} (x_i - m)(x_{i+1} - m) / sum_i (x_i - m)^2, for n &gt;= 2.
     * {@code s} holds the fused pass about the rounded mean {@code mr} ({@link Summation#moments}
     * with lag): s[0] = sum d, s[1] = sum d^2, s[4] = P = sum d_{i-1} d_i. Both sums are shifted
     * exactly to the true mean mr + delta (delta = s[0]/n, the rounding error of mr), as for the
     * variance. 0.0 for constant data (checked exactly by the caller or here via the spread),
     * +Infinity when the sums overflow double precision.
     */
    static double autocorrFrom(double[] x, double mr, double[] s) {
        int n = x.length;
        if (n < 2) {
            return Double.NaN;
        }
        double s0 = s[0];
        double delta = s0 / n;
        double d0 = x[0] - mr;
        double dl = x[n - 1] - mr;
        double num = s[4] - delta * ((s0 - dl) + (s0 - d0)) + (n - 1) * delta * delta;
        double den = s[1] - s0 * s0 / n;
        return Moments.lag1(num, den);
    }

    private static Object correlation(double[] d, Map<String, String> p) {
        if (allEqual(d, 0, d.length)) {
            return 0.0; // constant data, exactly (a rounded mean could fake a spread)
        }
        double m = meanOf(d);
        double[] s = new double[Summation.K_MOMENTS];
        Summation.moments(d, m, s);
        return autocorrFrom(d, m, s);
    }

    private static boolean allEqual(double[] x, int from, int to) {
        double v = x[from];
        for (int i = from + 1; i < to; i++) {
            if (x[i] != v) {
                return false;
            }
        }
        return true;
    }

    // ---------------------------------------------------------------- order statistics

    static double medianOf(double[] d) {
        int n = d.length;
        if ((n & 1) == 1) {
            return Selection.valuesAt(d, new int[] {n / 2})[0];
        }
        double[] v = Selection.valuesAt(d, new int[] {n / 2 - 1, n / 2});
        return Selection.midpoint(v[0], v[1]);
    }

    private static Object median(double[] d, Map<String, String> p) {
        return medianOf(d);
    }

    static double quantile(double[] d, double q) {
        int n = d.length;
        int[] ranks = Selection.quantileRanks(n, q);
        return Selection.quantileOf(n, q, ranks, Selection.valuesAt(d, ranks));
    }

    private static Object iqr(double[] d, Map<String, String> p) {
        int n = d.length;
        int[] ranks = mergeRanks(Selection.quantileRanks(n, 0.25), Selection.quantileRanks(n, 0.75));
        double[] v = Selection.valuesAt(d, ranks);
        return Selection.quantileOf(n, 0.75, ranks, v) - Selection.quantileOf(n, 0.25, ranks, v);
    }

    private static int[] mergeRanks(int[]... sets) {
        return Arrays.stream(sets).flatMapToInt(Arrays::stream).sorted().distinct().toArray();
    }

    private static final Pattern NUMBER =
            Pattern.compile("[+-]?(\\d+(\\.\\d*)?|\\.\\d+)([eE][+-]?\\d+)?");

    /** The {@code percentile} param: a decimal number in [0, 100]; absent means 50. */
    static double percentileParam(Map<String, String> params) throws AnalysisException {
        String raw = params.get("percentile");
        if (raw == null) {
            return 50.0;
        }
        String s = raw.trim();
        if (NUMBER.matcher(s).matches()) {
            double v = Double.parseDouble(s);
            if (v >= 0.0 && v <= 100.0) {
                return v;
            }
        }
        throw AnalysisException.invalid(
                "param 'percentile' must be a number between 0 and 100, got '" + raw + "'");
    }

    /**
     * The mode bin of x (see {@link Mode#bin}); named here too because the bin is part of the
     * {@code mode} contract this class documents, and the property tests check it through it.
     */
    static double modeBin(double x) {
        return Mode.bin(x);
    }

    // ---------------------------------------------------------------- summary

    private static Object summary(double[] x, Map<String, String> p) {
        int n = x.length;
        // pass 1: sum (numpy order, so mean == the mean kernel); min and max in one more pass
        double mean = meanOf(x);
        double[] mm = Summation.minMax(x);
        double min = mm[0];
        double max = mm[1];
        // pass 2: central moments and lag-1 products, fused, and the order statistics' first bucket level
        double[] s = new double[Summation.K_MOMENTS];
        BucketSelection.Histogram firstLevel = BucketSelection.Histogram.firstLevel(n, min, max);
        Summation.moments(x, mean, s, firstLevel);
        double variance = (s[1] - s[0] * s[0] / n) / (n - 1); // same bits as the variance kernel
        double[] cm = centralMoments(n, s);
        Double autocorr = min == max ? Double.valueOf(0.0) : finiteOrNull(autocorrFrom(x, mean, s));
        // skewness/kurtosis: null with too few points, 0.0 for (numerically) constant data
        Double sk = n < 3 ? null : zeroIfConstant(Moments.skewness(n, cm[0], cm[1], mean));
        Double ku = n < 4 ? null : zeroIfConstant(Moments.kurtosis(n, cm[0], cm[2], mean));

        // order statistics: the ranks of median, q25 and q75 selected together
        int[] medRanks = (n & 1) == 1 ? new int[] {n / 2} : new int[] {n / 2 - 1, n / 2};
        int[] ranks = mergeRanks(medRanks, Selection.quantileRanks(n, 0.25),
                Selection.quantileRanks(n, 0.75));
        double[] v = firstLevel != null ? BucketSelection.valuesAt(x, ranks, firstLevel)
                : Selection.valuesAt(x, ranks, min, max);
        double median = (n & 1) == 1 ? Selection.valueOfRank(ranks, v, n / 2)
                : Selection.midpoint(Selection.valueOfRank(ranks, v, n / 2 - 1),
                        Selection.valueOfRank(ranks, v, n / 2));

        Map<String, Object> r = new LinkedHashMap<>();
        r.put("count", (long) n);
        r.put("mean", mean);
        r.put("median", median);
        r.put("std", Math.sqrt(variance));
        r.put("variance", variance);
        r.put("min", min);
        r.put("max", max);
        r.put("range", max - min);
        r.put("q25", Selection.quantileOf(n, 0.25, ranks, v));
        r.put("q75", Selection.quantileOf(n, 0.75, ranks, v));
        r.put("autocorr", autocorr);
        // too few points or beyond double range: null, not an error
        r.put("skewness", sk);
        r.put("kurtosis", ku);
        return r;
    }

    /** NaN (constant data) becomes 0.0, +Infinity (overflow) null. */
    private static Double zeroIfConstant(double v) {
        return Double.isNaN(v) ? Double.valueOf(0.0) : finiteOrNull(v);
    }
}
