package analytics.engine.stats;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

/**
 * The shared moment arithmetic against scipy (references from scipy.stats on
 * x = [1, 2, 3, 4, 10, -2.5, 7.25]: mean 3.5357142857142856, population m2 14.471938775510205,
 * m3 11.643586005830912, m4 472.9496466316118) and its edge cases.
 */
class MomentsTest {

    private static final double MEAN = 3.5357142857142856;
    private static final double M2 = 14.471938775510205;
    private static final double M3 = 11.643586005830912;
    private static final double M4 = 472.9496466316118;

    @Test
    void skewnessAndKurtosisAreScipys() {
        assertEquals(0.2741266896040902, Moments.skewness(7, M2, M3, MEAN), 1e-15);   // skew(x, bias=False)
        assertEquals(0.019668383819259727, Moments.kurtosis(7, M2, M4, MEAN), 1e-15); // kurtosis(x, bias=False)
    }

    @Test
    void tooFewPointsOrNoSpreadIsNaNAndOverflowIsInfinity() {
        assertEquals(Double.NaN, Moments.skewness(2, M2, M3, MEAN));
        assertEquals(Double.NaN, Moments.kurtosis(3, M2, M4, MEAN));
        // spread below scipy's resolution of the mean: numerically constant
        assertEquals(Double.NaN, Moments.skewness(10, 1e-31, 0, 1e9));
        assertEquals(Double.NaN, Moments.kurtosis(10, 1e-31, 0, 1e9));
        assertEquals(Double.POSITIVE_INFINITY, Moments.skewness(10, Double.POSITIVE_INFINITY, 1, 0));
        assertEquals(Double.POSITIVE_INFINITY, Moments.kurtosis(10, Double.POSITIVE_INFINITY, 1, 0));
        assertEquals(Double.POSITIVE_INFINITY, Moments.skewness(10, 1e-200, 1e200, 0));
    }

    @Test
    void lag1IsTheClampedRatioZeroWithoutSpreadInfinityOnOverflow() {
        // sums of x above about the global mean: -53.965561224489804 / 101.30357142857143
        assertEquals(-53.965561224489804 / 101.30357142857143, Moments.lag1(-53.965561224489804, 101.30357142857143));
        assertEquals(0.0, Moments.lag1(0.0, 0.0));
        assertEquals(1.0, Moments.lag1(1.0000000000000002, 1.0));
        assertEquals(-1.0, Moments.lag1(-1.0000000000000002, 1.0));
        assertEquals(Double.POSITIVE_INFINITY, Moments.lag1(Double.POSITIVE_INFINITY, 1.0));
        assertEquals(Double.POSITIVE_INFINITY, Moments.lag1(1.0, Double.POSITIVE_INFINITY));
    }
}
