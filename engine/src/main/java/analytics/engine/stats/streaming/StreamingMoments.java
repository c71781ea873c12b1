package analytics.engine.stats.streaming;

import analytics.engine.stats.Moments;

/**
 * Count, sum, mean, min, max, central moments M2..M4 and the lag-1 co-moments of a series seen once,
 * in O(1) memory.
 *
 * <p>Numerics: values arrive in blocks (the caller's buffer, a few thousand values). Each block is
 * reduced two-pass on its own — a compensated (Neumaier) sum for its mean, then the sums of the
 * deviations' powers, with the usual correction of M2 by the deviations' residual sum — and merged
 * into the running totals with the pairwise update formulas of Chan, Golub &amp; LeVeque (M2) and
 * Pébay (M3, M4). The total sum is kept double-double, so the mean is correctly rounded in practice
 * and the merge deltas use an accurate running mean. Error therefore grows with the number of
 * blocks (about n/4096), not with n, and the results agree with the two-pass one-shot kernels to
 * about 1e-14 relative on well-conditioned data.
 *
 * <p>Lag-1 autocorrelation (global mean, see {@link #lag1}) uses the bivariate version of the
 * same scheme over the pairs (x[i-1], x[i]); the pair that straddles two blocks is carried over.
 */
public final class StreamingMoments {

    private long n;
    private double sumHi;
    private double sumLo;
    private boolean sumOverflow;
    private double mean; // running mean from the merges (used when the plain sum overflows)
    private double m2;
    private double m3;
    private double m4;
    private double min = Double.POSITIVE_INFINITY;
    private double max = Double.NEGATIVE_INFINITY;

    private final boolean lag;
    private long np; // pairs seen
    private double ma;
    private double mb;
    private double sxx;
    private double syy;
    private double sxy;
    private double last;
    private double first;
    private double minA = Double.POSITIVE_INFINITY;
    private double maxA = Double.NEGATIVE_INFINITY;
    private double minB = Double.POSITIVE_INFINITY;
    private double maxB = Double.NEGATIVE_INFINITY;

    /** @param lag also track the lag-1 co-moments (for autocorrelation) */
    public StreamingMoments(boolean lag) {
        this.lag = lag;
    }

    /** Adds {@code x[off, off+len)}; every value must be finite. */
    public void add(double[] x, int off, int len) {
        if (len <= 0) {
            return;
        }
        if (lag) {
            addPairs(x, off, len);
        }
        int end = off + len;
        // pass 1: compensated sum, min, max
        double s = 0;
        double c = 0;
        double lo = min;
        double hi = max;
        for (int i = off; i < end; i++) {
            double v = x[i];
            double t = s + v;
            c += Math.abs(s) >= Math.abs(v) ? (s - t) + v : (v - t) + s;
            s = t;
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        min = lo;
        max = hi;
        double blockSum = s + c;
        double bm;
        if (Double.isFinite(blockSum)) {
            bm = blockSum / len;
        } else { // the plain sum overflowed although every value is finite: average scaled values
            double ss = 0;
            for (int i = off; i < end; i++) {
                ss += x[i] * Moments.OVERFLOW_SCALE;
            }
            bm = ss / len / Moments.OVERFLOW_SCALE;
        }
        // pass 2: powers of the deviations from the block mean
        double d1 = 0;
        double d2 = 0;
        double d3 = 0;
        double d4 = 0;
        for (int i = off; i < end; i++) {
            double d = x[i] - bm;
            double dd = d * d;
            d1 += d;
            d2 += dd;
            d3 += dd * d;
            d4 += dd * dd;
        }
        double bM2 = d2 - d1 * d1 / len;
        double bM3 = d3;
        double bM4 = d4;

        // merge (Chan et al. / Pébay), with the accurate mean of what came before
        double nA = n;
        double nB = len;
        double nN = nA + nB;
        if (n == 0) {
            mean = bm;
            m2 = bM2;
            m3 = bM3;
            m4 = bM4;
        } else {
            double meanA = currentMean();
            double delta = bm - meanA;
            double dN = delta / nN;
            double dN2 = dN * dN;
            double newM4 = m4 + bM4 + delta * dN * dN2 * nA * nB * (nA * nA - nA * nB + nB * nB)
                    + 6.0 * dN2 * (nA * nA * bM2 + nB * nB * m2) + 4.0 * dN * (nA * bM3 - nB * m3);
            double newM3 = m3 + bM3 + delta * dN2 * nA * nB * (nA - nB) + 3.0 * dN * (nA * bM2 - nB * m2);
            m2 = m2 + bM2 + delta * dN * nA * nB;
            m3 = newM3;
            m4 = newM4;
            mean = meanA + dN * nB;
        }
        n += len;
        // double-double running sum (TwoSum), the block's own compensation folded into the low part
        if (!sumOverflow) {
            double t = sumHi + s;
            double z = t - sumHi;
            double err = (sumHi - (t - z)) + (s - z);
            double low = sumLo + err + c;
            double h = t + low;
            sumLo = low - (h - t);
            sumHi = h;
            if (!Double.isFinite(sumHi)) {
                sumOverflow = true;
            }
        }
    }

    private void addPairs(double[] x, int off, int len) {
        int end = off + len;
        int start = off;
        if (n == 0) {
            first = x[off];
            start = off + 1; // the first value has no predecessor
        }
        int pb = end - start;
        if (pb <= 0) {
            last = x[end - 1];
            return;
        }
        double prev0 = start == off ? last : x[off];
        // slice extremes: a = predecessors, b = successors
        double la = minA;
        double ha = maxA;
        double lb = minB;
        double hb = maxB;
        double sa = 0;
        double ca = 0;
        double sb = 0;
        double cb = 0;
        double prev = prev0;
        for (int i = start; i < end; i++) {
            double a = prev;
            double b = x[i];
            la = a < la ? a : la;
            ha = a > ha ? a : ha;
            lb = b < lb ? b : lb;
            hb = b > hb ? b : hb;
            double t = sa + a;
            ca += Math.abs(sa) >= Math.abs(a) ? (sa - t) + a : (a - t) + sa;
            sa = t;
            t = sb + b;
            cb += Math.abs(sb) >= Math.abs(b) ? (sb - t) + b : (b - t) + sb;
            sb = t;
            prev = b;
        }
        minA = la;
        maxA = ha;
        minB = lb;
        maxB = hb;
        double bma = (sa + ca) / pb;
        double bmb = (sb + cb) / pb;
        if (!Double.isFinite(bma) || !Double.isFinite(bmb)) {
            bma = scaledMean(prev0, x, start, end, true);
            bmb = scaledMean(prev0, x, start, end, false);
        }
        double xy = 0;
        double xx = 0;
        double yy = 0;
        double ea = 0;
        double eb = 0;
        prev = prev0;
        for (int i = start; i < end; i++) {
            double a = prev - bma;
            double b = x[i] - bmb;
            xy += a * b;
            xx += a * a;
            yy += b * b;
            ea += a;
            eb += b;
            prev = x[i];
        }
        xy -= ea * eb / pb;
        xx -= ea * ea / pb;
        yy -= eb * eb / pb;
        if (np == 0) {
            ma = bma;
            mb = bmb;
            sxx = xx;
            syy = yy;
            sxy = xy;
        } else {
            double nA = np;
            double nN = nA + pb;
            double dx = bma - ma;
            double dy = bmb - mb;
            double f = nA * pb / nN;
            sxy += xy + dx * dy * f;
            sxx += xx + dx * dx * f;
            syy += yy + dy * dy * f;
            ma += dx * pb / nN;
            mb += dy * pb / nN;
        }
        np += pb;
        last = x[end - 1];
    }

    private static double scaledMean(double prev0, double[] x, int start, int end, boolean predecessors) {
        double s = 0;
        double prev = prev0;
        for (int i = start; i < end; i++) {
            s += (predecessors ? prev : x[i]) * Moments.OVERFLOW_SCALE;
            prev = x[i];
        }
        return s / (end - start) / Moments.OVERFLOW_SCALE;
    }

    private double currentMean() {
        if (!sumOverflow) {
            double m = (sumHi + sumLo) / n;
            if (Double.isFinite(m)) {
                return m;
            }
        }
        return mean;
    }

    public long count() {
        return n;
    }

    /** The mean (n &gt; 0). */
    public double mean() {
        return currentMean();
    }

    public double min() {
        return min;
    }

    public double max() {
        return max;
    }

    /** Sum of squared deviations from the mean. */
    public double m2() {
        return m2;
    }

    public double m3() {
        return m3;
    }

    public double m4() {
        return m4;
    }

    /** Sample variance (n-1); NaN below 2 points. */
    public double variance() {
        return n < 2 ? Double.NaN : m2 / (n - 1);
    }

    /**
     * Lag-1 autocorrelation with the global mean m, as the one-shot kernel (the earlier engine's
     * definition): sum_{i<n-1} (x_i - m)(x_{i+1} - m) / sum (x_i - m)^2. The numerator comes from
     * the pair co-moment about the pair means: with ma - m = (m - x_{n-1})/(n-1) and
     * mb - m = (m - x_0)/(n-1) exactly, it is sxy + (m - x_{n-1})(m - x_0)/(n-1). NaN below 2
     * points, 0.0 for constant data, +Infinity when the sums overflowed.
     */
    public double lag1() {
        if (!lag) {
            throw new IllegalStateException("lag-1 moments were not tracked");
        }
        if (n < 2) {
            return Double.NaN;
        }
        if (min == max) {
            return 0.0;
        }
        double m = mean();
        double num = sxy + (m - last) * (m - first) / (n - 1);
        return Moments.lag1(num, m2);
    }

    /** scipy.stats.skew(bias=False); NaN when undefined, +Infinity on overflow ({@link Moments#skewness}). */
    public double skewness() {
        return Moments.skewness(n, m2 / n, m3 / n, mean());
    }

    /** scipy.stats.kurtosis(bias=False, fisher=True); NaN when undefined, +Infinity on overflow. */
    public double kurtosis() {
        return Moments.kurtosis(n, m2 / n, m4 / n, mean());
    }
}
