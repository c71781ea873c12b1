package analytics.engine.stats.streaming;

import java.util.Arrays;
import org.apache.datasketches.kll.KllDoublesSketch;
import org.apache.datasketches.quantilescommon.QuantileSearchCriteria;

/**
 * Quantiles of a stream: exact while the values fit a memory budget ({@code exactMaxPoints} doubles,
 * 8 bytes each), then an Apache DataSketches KLL sketch of parameter k (a few tens of KiB whatever the
 * length of the stream) whose normalised rank error is reported with every answer.
 *
 * <p>In exact mode the caller gets the values themselves ({@link #exactValues()}) and computes the
 * quantiles with the one-shot kernels, so streamed and one-shot answers are identical. In sketch mode
 * {@link #quantile(double)} returns a retained value whose true rank lies within
 * {@link #rankError()} (normalised, 99% confidence) of the requested one.
 */
public final class StreamingQuantiles {

    private final long exactMaxPoints;
    private final int k;
    private double[] buf = new double[1024];
    private int size;
    private KllDoublesSketch sketch;

    public StreamingQuantiles(long exactMaxPoints, int k) {
        if (exactMaxPoints < 0 || exactMaxPoints > Integer.MAX_VALUE - 16) {
            throw new IllegalArgumentException("exactMaxPoints out of range: " + exactMaxPoints);
        }
        this.exactMaxPoints = exactMaxPoints;
        this.k = k;
    }

    /** Adds {@code x[off, off+len)} (finite values). */
    public void add(double[] x, int off, int len) {
        if (sketch == null) {
            if ((long) size + len <= exactMaxPoints) {
                if (size + len > buf.length) {
                    long grown = Math.max((long) size + len, Math.min(exactMaxPoints, 2L * buf.length));
                    buf = Arrays.copyOf(buf, (int) grown);
                }
                System.arraycopy(x, off, buf, size, len);
                size += len;
                return;
            }
            // over budget: everything so far goes into the sketch and the buffer is released
            sketch = KllDoublesSketch.newHeapInstance(k);
            if (size > 0) {
                sketch.update(buf, 0, size);
            }
            buf = null;
            size = 0;
        }
        sketch.update(x, off, len);
    }

    /** True while every value is kept (quantiles are exact). */
    public boolean exact() {
        return sketch == null;
    }

    /** The values seen, in arrival order (exact mode only); the internal buffer is released. */
    public double[] exactValues() {
        if (sketch != null) {
            throw new IllegalStateException("quantiles are estimated by a sketch");
        }
        double[] out = size == buf.length ? buf : Arrays.copyOf(buf, size);
        buf = null;
        return out;
    }

    /** Sketch mode: the value at normalised rank q (0..1), inclusive search criterion. */
    public double quantile(double q) {
        return sketch.getQuantile(q, QuantileSearchCriteria.INCLUSIVE);
    }

    /** Sketch mode: normalised rank error of a single quantile query (99% confidence). */
    public double rankError() {
        return sketch.getNormalizedRankError(false);
    }

    public int k() {
        return k;
    }

    /** Values the sketch retains (its memory is about 8 bytes each). */
    public int retained() {
        return sketch == null ? size : sketch.getNumRetained();
    }

    /**
     * Test suites only (setting test_mode): seeds the random generator the KLL compactions share, so a
     * given stream always yields the same sketch. Returns false if this DataSketches version has no such
     * generator.
     */
    public static boolean seedSketchRandom(long seed) {
        try {
            java.lang.reflect.Field f = org.apache.datasketches.kll.KllSketch.class.getDeclaredField("random");
            f.setAccessible(true);
            ((java.util.Random) f.get(null)).setSeed(seed);
            return true;
        } catch (ReflectiveOperationException | RuntimeException e) {
            return false;
        }
    }

    /** The rank error a sketch of parameter k guarantees (99% confidence, single quantile). */
    public static double rankErrorFor(int k) {
        return KllDoublesSketch.getNormalizedRankError(k, false);
    }
}
