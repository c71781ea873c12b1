package analytics.engine.stats;

import analytics.engine.api.AnalysisException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
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
 *       introselect on one private copy (see {@link Selection}); the caller's array is never
 *       modified.
 *   <li>{@code mode}: values rounded like {@code np.round(x, 6)} (x·1e6, round half to even,
 *       /1e6; -0.0 counts as 0.0; a value too large to scale is already integral and kept);
 *       result {@code {modes, count, frequency, is_multimodal, data_size}}, modes ascending.
 *   <li>{@code skewness} = {@code scipy.stats.skew(x, bias=False)} (needs 3 points),
 *       {@code kurtosis} = {@code scipy.stats.kurtosis(x, bias=False)} (excess, needs 4), from
 *       central moments corrected for the rounding of the mean the same way (see
 *       {@link #centralMoments}). Where scipy returns NaN because the data are (numerically)
 *       constant — m2 &lt;= (1e-15·mean)^2, scipy's own test — the kernel raises an error.
 *   <li>{@code correlation}: lag-1 autocorrelation, Pearson r of x[:-1] and x[1:]
 *       ({@code np.corrcoef(x[:-1], x[1:])[0, 1]}), two-pass over each slice, needs 3 points; an
 *       error when either slice is constant.
 *   <li>{@code summary}: count, mean, median, std, variance, min, max, range, q25, q75, autocorr,
 *       skewness, kurtosis (the last three null when undefined or too few points); needs 2
 *       points. The mean pass, a fused min/max pass, then one fused pass for all central moments
 *       and the lag products;
 *       one copy for median/q25/q75 placed by a single multi-rank selection.
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
        reg(k, mp, "mode", 1, NativeStatistics::mode);
        reg(k, mp, "skewness", 3, NativeStatistics::skewness);
        reg(k, mp, "kurtosis", 4, NativeStatistics::kurtosis);
        reg(k, mp, "count", 1, (d, p) -> (long) d.length);
        reg(k, mp, "correlation", 3, NativeStatistics::correlation);
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
            double scale = 0x1p-64;
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

    /** scipy's "numerically constant" test: m2 <= (finfo(float64).resolution * mean)^2. */
    private static boolean zeroSpread(double m2, double mean) {
        double r = 1e-15 * mean;
        return m2 <= r * r;
    }

    /**
     * scipy.stats.skew(bias=False) from m2 = mean(d^2), m3 = mean(d^3). NaN when undefined (too
     * few points or numerically constant data), +Infinity when it overflows double precision.
     */
    static double skewFrom(int n, double m2, double m3, double mean) {
        if (n < 3) {
            return Double.NaN;
        }
        if (!Double.isFinite(m2)) {
            return Double.POSITIVE_INFINITY;
        }
        if (zeroSpread(m2, mean)) {
            return Double.NaN;
        }
        double v = Math.sqrt((n - 1.0) * n) / (n - 2.0) * m3 / Math.pow(m2, 1.5);
        return Double.isFinite(v) ? v : Double.POSITIVE_INFINITY;
    }

    /** scipy.stats.kurtosis(bias=False, fisher=True) from m2 and m4; NaN / +Infinity as above. */
    static double kurtFrom(int n, double m2, double m4, double mean) {
        if (n < 4) {
            return Double.NaN;
        }
        if (!Double.isFinite(m2)) {
            return Double.POSITIVE_INFINITY;
        }
        if (zeroSpread(m2, mean)) {
            return Double.NaN;
        }
        double nd = n;
        double nval = 1.0 / (nd - 2) / (nd - 3)
                * (((nd * nd) - 1.0) * m4 / Math.pow(m2, 2.0) - 3 * Math.pow(nd - 1, 2.0));
        double v = (nval + 3.0) - 3;
        return Double.isFinite(v) ? v : Double.POSITIVE_INFINITY;
    }

    private static Double finiteOrNull(double v) {
        return Double.isFinite(v) ? v : null;
    }

    private static Object skewness(double[] d, Map<String, String> p) throws AnalysisException {
        int n = d.length;
        double m = meanOf(d);
        double[] s = new double[7];
        Summation.moments(d, m, false, s);
        double[] c = centralMoments(n, s);
        double v = skewFrom(n, c[0], c[1], m);
        if (Double.isNaN(v)) {
            throw AnalysisException.invalid("skewness is undefined for constant data (zero variance)");
        }
        return v;
    }

    private static Object kurtosis(double[] d, Map<String, String> p) throws AnalysisException {
        int n = d.length;
        double m = meanOf(d);
        double[] s = new double[7];
        Summation.moments(d, m, false, s);
        double[] c = centralMoments(n, s);
        double v = kurtFrom(n, c[0], c[2], m);
        if (Double.isNaN(v)) {
            throw AnalysisException.invalid("kurtosis is undefined for constant data (zero variance)");
        }
        return v;
    }

    // ---------------------------------------------------------------- lag-1 autocorrelation

    /**
     * Pearson r of x[:-1] and x[1:], two-pass on each slice; NaN when either slice is constant
     * (checked exactly with min == max, so rounding in the slice mean cannot fake a spread),
     * +Infinity when the sums overflow double precision.
     */
    static double lag1(double[] x) {
        int n = x.length;
        if (n < 3) {
            return Double.NaN;
        }
        // exact constancy of either slice (the scan stops at the first differing value)
        if (allEqual(x, 0, n - 1) || allEqual(x, 1, n)) {
            return Double.NaN;
        }
        // pass 1: sum of the inner points x[1..n-2], shared by both slice means
        double inner = Summation.sum(x, 1, n - 2);
        double ma = (x[0] + inner) / (n - 1);
        double mb = (inner + x[n - 1]) / (n - 1);
        // pass 2: co-moment, the two sums of squares and the two deviation sums (for the
        // corrected two-pass formulas, removing the rounding error of ma and mb); two chains each
        double sxy0 = 0, sxy1 = 0, sxx0 = 0, sxx1 = 0, syy0 = 0, syy1 = 0;
        double sa0 = 0, sa1 = 0, sb0 = 0, sb1 = 0;
        int i = 0;
        int last = n - 1; // pairs (i, i+1) for i in [0, n-1)
        for (; i + 1 < last; i += 2) {
            double a0 = x[i] - ma, b0 = x[i + 1] - mb;
            double a1 = x[i + 1] - ma, b1 = x[i + 2] - mb;
            sxy0 += a0 * b0;
            sxx0 += a0 * a0;
            syy0 += b0 * b0;
            sa0 += a0;
            sb0 += b0;
            sxy1 += a1 * b1;
            sxx1 += a1 * a1;
            syy1 += b1 * b1;
            sa1 += a1;
            sb1 += b1;
        }
        for (; i < last; i++) {
            double a0 = x[i] - ma, b0 = x[i + 1] - mb;
            sxy0 += a0 * b0;
            sxx0 += a0 * a0;
            syy0 += b0 * b0;
            sa0 += a0;
            sb0 += b0;
        }
        double sa = sa0 + sa1;
        double sb = sb0 + sb1;
        return pearson((sxy0 + sxy1) - sa * sb / last, (sxx0 + sxx1) - sa * sa / last,
                (syy0 + syy1) - sb * sb / last);
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

    /** r from the centred sums; NaN if a slice has no spread, +Infinity if the sums overflowed. */
    private static double pearson(double sxy, double sxx, double syy) {
        if (!Double.isFinite(sxy) || !Double.isFinite(sxx) || !Double.isFinite(syy)) {
            return Double.POSITIVE_INFINITY;
        }
        if (!(sxx > 0) || !(syy > 0)) {
            return Double.NaN;
        }
        double r = sxy / Math.sqrt(sxx) / Math.sqrt(syy);
        return Math.max(-1.0, Math.min(1.0, r));
    }

    private static Object correlation(double[] d, Map<String, String> p) throws AnalysisException {
        double r = lag1(d);
        if (Double.isNaN(r)) {
            throw AnalysisException.invalid("lag-1 autocorrelation is undefined for constant data");
        }
        return r;
    }

    // ---------------------------------------------------------------- order statistics

    static double medianOf(double[] d) {
        int n = d.length;
        double[] c = Scratch.copyOf(d);
        if ((n & 1) == 1) {
            Selection.select(c, 0, n - 1, n / 2);
            return c[n / 2];
        }
        Selection.selectAll(c, 0, n - 1, new int[] {n / 2 - 1, n / 2}, 0, 2);
        return Selection.midpoint(c[n / 2 - 1], c[n / 2]);
    }

    private static Object median(double[] d, Map<String, String> p) {
        return medianOf(d);
    }

    static double quantile(double[] d, double q) {
        int n = d.length;
        double[] c = Scratch.copyOf(d);
        int[] ranks = Selection.quantileRanks(n, q);
        Selection.selectAll(c, 0, n - 1, ranks, 0, ranks.length);
        return Selection.quantileFromPlaced(c, n, q);
    }

    private static Object iqr(double[] d, Map<String, String> p) {
        int n = d.length;
        double[] c = Scratch.copyOf(d);
        int[] ranks = mergeRanks(Selection.quantileRanks(n, 0.25), Selection.quantileRanks(n, 0.75));
        Selection.selectAll(c, 0, n - 1, ranks, 0, ranks.length);
        return Selection.quantileFromPlaced(c, n, 0.75) - Selection.quantileFromPlaced(c, n, 0.25);
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

    // ---------------------------------------------------------------- mode

    /** {@code np.round(x, 6)}: x*1e6, round half to even, /1e6; -0.0 normalised to 0.0. */
    static double round6(double x) {
        double y = x * 1e6;
        if (Double.isInfinite(y)) {
            return x; // |x| > 1.7e302: already an integer, nothing to round
        }
        return Math.rint(y) / 1e6 + 0.0;
    }

    private static Object mode(double[] d, Map<String, String> p) {
        int n = d.length;
        // Few distinct values (the usual case for a mode): a small hash table that stays in
        // cache. Once it would outgrow the cache, counting by sorting is faster: LSD radix sort of
        // the rounded values (streaming passes, no random access into a 10^6-slot table).
        CountTable t = new CountTable();
        for (int i = 0; i < n; i++) {
            if (!t.add(Double.doubleToRawLongBits(round6(d[i])))) {
                return modeBySorting(d);
            }
        }
        return modeResult(t.modes(), t.best, n);
    }

    /**
     * Open-addressing hash of the rounded values' bit patterns to their counts, no boxing: key
     * and count interleaved in one {@code long[]} so a probe touches one cache line. It starts
     * at 4096 slots and doubles at half load up to {@link #MAX_CAP} slots (2 MiB); {@link #add}
     * returns false when more distinct values arrive than that holds.
     */
    private static final class CountTable {
        static final int MAX_CAP = 1 << 17;
        long[] t;
        int mask;
        int size;
        int best;

        CountTable() {
            int cap = 1 << 12;
            t = new long[2 * cap];
            mask = cap - 1;
        }

        /**
         * Fibonacci hashing: the top log2(capacity) bits of key * 2^64/phi, which depend on every
         * key bit (the low bits would not: rounded values often end in long runs of zero bits).
         */
        private static int slot(long bits, int mask) {
            long h = (bits ^ (bits >>> 31)) * 0x9E3779B97F4A7C15L;
            return (int) (h >>> (64 - Integer.bitCount(mask)));
        }

        boolean add(long bits) {
            long[] t = this.t;
            int mask = this.mask;
            int s = slot(bits, mask);
            while (true) {
                long c = t[2 * s + 1];
                if (c == 0) {
                    t[2 * s] = bits;
                    t[2 * s + 1] = 1;
                    if (best == 0) {
                        best = 1;
                    }
                    if (++size > (mask >>> 1)) {
                        if (mask + 1 >= MAX_CAP) {
                            return false;
                        }
                        grow();
                    }
                    return true;
                }
                if (t[2 * s] == bits) {
                    t[2 * s + 1] = ++c;
                    if (c > best) {
                        best = (int) c;
                    }
                    return true;
                }
                s = (s + 1) & mask;
            }
        }

        private void grow() {
            long[] old = t;
            int cap = (mask + 1) << 1;
            long[] nt = new long[2 * cap];
            int m = cap - 1;
            for (int i = 0; i < old.length; i += 2) {
                if (old[i + 1] != 0) {
                    int s = slot(old[i], m);
                    while (nt[2 * s + 1] != 0) {
                        s = (s + 1) & m;
                    }
                    nt[2 * s] = old[i];
                    nt[2 * s + 1] = old[i + 1];
                }
            }
            t = nt;
            mask = m;
        }

        /** The values with the highest count, ascending. */
        double[] modes() {
            int k = 0;
            for (int i = 1; i < t.length; i += 2) {
                if (t[i] == best) {
                    k++;
                }
            }
            double[] out = new double[k];
            int j = 0;
            for (int i = 0; i < t.length; i += 2) {
                if (t[i + 1] == best) {
                    out[j++] = Double.longBitsToDouble(t[i]);
                }
            }
            Arrays.sort(out);
            return out;
        }
    }

    /**
     * Mode by sorting: the rounded values mapped to order-preserving unsigned keys, LSD radix
     * sorted 8 bits at a time (a pass whose digit is the same for every key is skipped, which for
     * data in a limited range is most of the exponent bits), then one scan over the runs; the
     * modes come out ascending.
     */
    private static Object modeBySorting(double[] d) {
        int n = d.length;
        long[] a = new long[n];
        long[] b = new long[n];
        int[][] hist = new int[8][256];
        for (int i = 0; i < n; i++) {
            long bits = Double.doubleToRawLongBits(round6(d[i]));
            // signed order of doubles -> unsigned order of longs
            long u = (bits ^ ((bits >> 63) & 0x7FFFFFFFFFFFFFFFL)) ^ Long.MIN_VALUE;
            a[i] = u;
            for (int p = 0; p < 8; p++) {
                hist[p][(int) (u >>> (8 * p)) & 0xFF]++;
            }
        }
        for (int p = 0; p < 8; p++) {
            int[] h = hist[p];
            if (h[(int) (a[0] >>> (8 * p)) & 0xFF] == n) {
                continue; // every key has the same digit here
            }
            int sum = 0;
            for (int k = 0; k < 256; k++) {
                int c = h[k];
                h[k] = sum;
                sum += c;
            }
            int shift = 8 * p;
            for (int i = 0; i < n; i++) {
                long u = a[i];
                b[h[(int) (u >>> shift) & 0xFF]++] = u;
            }
            long[] t = a;
            a = b;
            b = t;
        }
        int best = 0;
        int nModes = 0;
        for (int i = 0; i < n; ) {
            int j = i + 1;
            while (j < n && a[j] == a[i]) {
                j++;
            }
            int run = j - i;
            if (run > best) {
                best = run;
                nModes = 0;
            }
            if (run == best) {
                b[nModes++] = a[i];
            }
            i = j;
        }
        double[] modes = new double[nModes];
        for (int i = 0; i < nModes; i++) {
            long s = b[i] ^ Long.MIN_VALUE;
            modes[i] = Double.longBitsToDouble(s ^ ((s >> 63) & 0x7FFFFFFFFFFFFFFFL));
        }
        return modeResult(modes, best, n);
    }

    private static Object modeResult(double[] modes, int best, int n) {
        int nModes = modes.length;
        List<Double> list = new ArrayList<>(nModes);
        for (double v : modes) {
            list.add(v);
        }
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("modes", list);
        r.put("count", (long) nModes);
        r.put("frequency", (long) best);
        r.put("is_multimodal", nModes > 1);
        r.put("data_size", (long) n);
        return r;
    }

    // ---------------------------------------------------------------- summary

    private static Object summary(double[] x, Map<String, String> p) {
        int n = x.length;
        // pass 1: sum (numpy order, so mean == the mean kernel); min and max in one more pass
        double mean = meanOf(x);
        double[] mm = Summation.minMax(x);
        double min = mm[0];
        double max = mm[1];
        // pass 2: central moments and lag-1 products, fused
        double[] s = new double[7];
        Summation.moments(x, mean, n >= 3, s);
        double variance = (s[1] - s[0] * s[0] / n) / (n - 1); // same bits as the variance kernel
        double[] cm = centralMoments(n, s);
        Double autocorr = null;
        if (n >= 3) {
            double r = lag1FromDeviations(x, mean, s[4], s[5], s[6]);
            autocorr = finiteOrNull(r);
        }
        double sk = skewFrom(n, cm[0], cm[1], mean);
        double ku = kurtFrom(n, cm[0], cm[2], mean);

        // order statistics: one copy, ranks of median, q25 and q75 placed together
        double[] c = Scratch.copyOf(x);
        int[] medRanks = (n & 1) == 1 ? new int[] {n / 2} : new int[] {n / 2 - 1, n / 2};
        int[] ranks = mergeRanks(medRanks, Selection.quantileRanks(n, 0.25),
                Selection.quantileRanks(n, 0.75));
        Selection.selectAll(c, 0, n - 1, ranks, 0, ranks.length);
        double median = (n & 1) == 1 ? c[n / 2] : Selection.midpoint(c[n / 2 - 1], c[n / 2]);

        Map<String, Object> r = new LinkedHashMap<>();
        r.put("count", (long) n);
        r.put("mean", mean);
        r.put("median", median);
        r.put("std", Math.sqrt(variance));
        r.put("variance", variance);
        r.put("min", min);
        r.put("max", max);
        r.put("range", max - min);
        r.put("q25", Selection.quantileFromPlaced(c, n, 0.25));
        r.put("q75", Selection.quantileFromPlaced(c, n, 0.75));
        r.put("autocorr", autocorr);
        // undefined (too few points, constant data) or beyond double range: null, not an error
        r.put("skewness", finiteOrNull(sk));
        r.put("kurtosis", finiteOrNull(ku));
        return r;
    }

    /**
     * Lag-1 autocorrelation from the fused pass (deviations d = x - mean): P = sum d_{i-1} d_i,
     * S and Q the sum and sum of squares of the inner deviations d_1..d_{n-2}. The slice means are
     * mean + da, mean + db, and the centred sums follow exactly:
     * sxx = (d_0^2 + Q) - Da·da, syy = (Q + d_{n-1}^2) - Db·db, sxy = P - Da·db.
     * When a slice mean is far from the global mean (an extreme point at an end, or very short
     * data) that correction cancels more than one bit, and the two-pass {@link #lag1} is used
     * instead, so the answer is always as accurate as the two-pass one.
     */
    private static double lag1FromDeviations(double[] x, double mean, double p, double sInner,
                                             double qInner) {
        int n = x.length;
        double d0 = x[0] - mean;
        double dl = x[n - 1] - mean;
        double bigA = d0 + sInner;
        double bigB = sInner + dl;
        double da = bigA / (n - 1);
        double db = bigB / (n - 1);
        double ssa = d0 * d0 + qInner;
        double ssb = qInner + dl * dl;
        double sxx = ssa - bigA * da;
        double syy = ssb - bigB * db;
        if (!(sxx > 0.5 * ssa) || !(syy > 0.5 * ssb)) {
            return lag1(x);
        }
        return pearson(p - bigA * db, sxx, syy);
    }
}
