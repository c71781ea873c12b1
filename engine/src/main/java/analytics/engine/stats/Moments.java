package analytics.engine.stats;

/**
 * The moment arithmetic shared by the one-shot kernels ({@link NativeStatistics}) and the streaming accumulator
 * ({@code streaming.StreamingMoments}): each computes its sums its own way (fused passes over an array, or merged
 * blocks), then both turn them into skewness, kurtosis and lag-1 autocorrelation here, so the two paths give the same
 * answer for the same moments, bit for bit.
 */
public final class Moments {

    /**
     * Scale for averaging finite values whose plain sum overflows: {@code sum(x * SCALE) / n / SCALE}
     * (a power of two, so scaling is exact unless values underflow).
     */
    public static final double OVERFLOW_SCALE = 0x1p-64;

    private Moments() {
    }

    /**
     * scipy.stats.skew(bias=False) from the population central moments m2 = mean(d^2), m3 = mean(d^3) of n values
     * with the given mean. NaN when undefined (fewer than 3 points or numerically constant data), +Infinity when it
     * overflows double precision.
     */
    public static double skewness(long n, double m2, double m3, double mean) {
        if (n < 3) {
            return Double.NaN;
        }
        if (!Double.isFinite(m2)) {
            return Double.POSITIVE_INFINITY;
        }
        if (zeroSpread(m2, mean)) {
            return Double.NaN;
        }
        double nd = n;
        double v = Math.sqrt((nd - 1.0) * nd) / (nd - 2.0) * m3 / Math.pow(m2, 1.5);
        return Double.isFinite(v) ? v : Double.POSITIVE_INFINITY;
    }

    /**
     * scipy.stats.kurtosis(bias=False, fisher=True) from the population central moments m2 and m4; NaN when
     * undefined (fewer than 4 points or numerically constant data), +Infinity on overflow.
     */
    public static double kurtosis(long n, double m2, double m4, double mean) {
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
        // scipy adds 3 (Pearson) and subtracts it again (Fisher); the same rounding keeps the bits equal
        double v = (nval + 3.0) - 3;
        return Double.isFinite(v) ? v : Double.POSITIVE_INFINITY;
    }

    /**
     * Lag-1 autocorrelation with the global mean m (the earlier engine's definition, which v7 clients rely on) from
     * its two sums: {@code num} = sum_{i<n-1} (x_i - m)(x_{i+1} - m), {@code den} = sum_i (x_i - m)^2.
     * +Infinity when either overflowed, 0.0 without spread (the earlier engine's answer for constant data), else the
     * ratio clamped to [-1, 1] (|r| &lt;= 1 holds exactly by Cauchy-Schwarz; the clamp removes rounding).
     */
    public static double lag1(double num, double den) {
        if (!Double.isFinite(num) || !Double.isFinite(den)) {
            return Double.POSITIVE_INFINITY;
        }
        if (!(den > 0)) {
            return 0.0;
        }
        return Math.max(-1.0, Math.min(1.0, num / den));
    }

    /** scipy's "numerically constant" test: m2 &lt;= (finfo(float64).resolution * mean)^2. */
    private static boolean zeroSpread(double m2, double mean) {
        double r = 1e-15 * mean;
        return m2 <= r * r;
    }
}
