package analytics.engine.dispatch;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * The NaN/Inf check every request goes through: its branch-free fast path must agree with a plain scan
 * for every length (the 8-wide loop and its tail), every position and every kind of non-finite value.
 */
class RequestValidatorTest {

    private static int scan(double[] a) {
        for (int i = 0; i < a.length; i++) {
            if (!Double.isFinite(a[i])) {
                return i;
            }
        }
        return -1;
    }

    @Test
    void firstNonFiniteAgreesWithAPlainScan() {
        Random rnd = new Random(13);
        double quietNanWithPayload = Double.longBitsToDouble(0x7ff8000000000001L);
        double negativeSignallingNan = Double.longBitsToDouble(0xfff0000000000001L);
        double[] bad = {Double.NaN, Double.POSITIVE_INFINITY, Double.NEGATIVE_INFINITY, quietNanWithPayload,
                negativeSignallingNan};
        double[] extreme = {Double.MAX_VALUE, -Double.MAX_VALUE, Double.MIN_VALUE, -0.0, 0.0, 1e308, -1e-320};
        for (int n = 0; n <= 40; n++) {
            for (int trial = 0; trial < 30; trial++) {
                double[] a = new double[n];
                for (int i = 0; i < n; i++) {
                    a[i] = rnd.nextInt(4) == 0 ? extreme[rnd.nextInt(extreme.length)] : rnd.nextGaussian() * 1e300;
                }
                assertEquals(-1, RequestValidator.firstNonFinite(a), "all finite, n=" + n);
                if (n > 0) {
                    int k = rnd.nextInt(1 + rnd.nextInt(3));
                    for (int j = 0; j <= k; j++) {
                        a[rnd.nextInt(n)] = bad[rnd.nextInt(bad.length)];
                    }
                    assertEquals(scan(a), RequestValidator.firstNonFinite(a), "n=" + n);
                }
            }
        }
        double[] big = new double[1_000_003];
        assertEquals(-1, RequestValidator.firstNonFinite(big));
        big[1_000_002] = Double.NEGATIVE_INFINITY; // in the tail after the 8-wide loop
        assertEquals(1_000_002, RequestValidator.firstNonFinite(big));
        big[999_999] = Double.NaN;
        assertEquals(999_999, RequestValidator.firstNonFinite(big));
    }
}
