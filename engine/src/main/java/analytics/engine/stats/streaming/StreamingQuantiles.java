package analytics.engine.stats.streaming;

import java.util.Arrays;
import java.util.concurrent.atomic.AtomicLong;
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
 *
 * <p>All streams of an engine share one {@link Budget} of bytes for their exact buffers: a stream whose
 * buffer would grow past what is left switches to the sketch early (and says so), so many concurrent
 * streams cannot exhaust the heap. {@link #release()} returns the reservation.
 */
public final class StreamingQuantiles {

    /** Bytes the exact buffers of all streams may hold together. */
    public static final class Budget {
        private final AtomicLong free;
        private final long total;

        public Budget(long bytes) {
            this.total = bytes;
            this.free = new AtomicLong(bytes);
        }

        boolean reserve(long bytes) {
            long f;
            do {
                f = free.get();
                if (f < bytes) {
                    return false;
                }
            } while (!free.compareAndSet(f, f - bytes));
            return true;
        }

        void release(long bytes) {
            free.addAndGet(bytes);
        }

        /** Bytes not reserved now. */
        public long free() {
            return free.get();
        }

        public long total() {
            return total;
        }

        /** No limit beyond each stream's own. */
        public static Budget unlimited() {
            return new Budget(Long.MAX_VALUE / 2);
        }
    }

    private static final int INITIAL = 1024;
    private final long exactMaxPoints;
    private final int k;
    private final Budget budget;
    private double[] buf;
    private long reserved; // bytes of buf reserved from the budget
    private int size;
    private boolean budgetExhausted;
    private KllDoublesSketch sketch;

    public StreamingQuantiles(long exactMaxPoints, int k) {
        this(exactMaxPoints, k, Budget.unlimited());
    }

    public StreamingQuantiles(long exactMaxPoints, int k, Budget budget) {
        if (exactMaxPoints < 0 || exactMaxPoints > Integer.MAX_VALUE - 16) {
            throw new IllegalArgumentException("exactMaxPoints out of range: " + exactMaxPoints);
        }
        this.exactMaxPoints = exactMaxPoints;
        this.k = k;
        this.budget = budget;
    }

    /** Adds {@code x[off, off+len)} (finite values). */
    public void add(double[] x, int off, int len) {
        if (sketch == null) {
            if ((long) size + len <= exactMaxPoints && ensureCapacity(size + len)) {
                System.arraycopy(x, off, buf, size, len);
                size += len;
                return;
            }
            // over the stream's or the engine's budget: everything so far goes into the sketch and the
            // buffer is released
            sketch = KllDoublesSketch.newHeapInstance(k);
            if (size > 0) {
                sketch.update(buf, 0, size);
            }
            release();
            size = 0;
        }
        sketch.update(x, off, len);
    }

    private boolean ensureCapacity(int needed) {
        int have = buf == null ? 0 : buf.length;
        if (needed <= have) {
            return true;
        }
        long grown = Math.max(needed, Math.min(exactMaxPoints, Math.max(INITIAL, 2L * have)));
        long extra = (grown - have) * 8L;
        if (!budget.reserve(extra)) {
            budgetExhausted = true;
            return false;
        }
        reserved += extra;
        buf = buf == null ? new double[(int) grown] : Arrays.copyOf(buf, (int) grown);
        return true;
    }

    /** Returns this stream's exact-buffer reservation to the budget and drops the buffer (idempotent). */
    public void release() {
        buf = null;
        if (reserved > 0) {
            budget.release(reserved);
            reserved = 0;
        }
    }

    /** True if the sketch took over because the engine-wide budget ran out (not the stream's own limit). */
    public boolean budgetExhausted() {
        return budgetExhausted;
    }

    /** True while every value is kept (quantiles are exact). */
    public boolean exact() {
        return sketch == null;
    }

    /**
     * The values seen, in arrival order (exact mode only; may be the internal buffer itself). Call
     * {@link #release()} when done with them.
     */
    public double[] exactValues() {
        if (sketch != null) {
            throw new IllegalStateException("quantiles are estimated by a sketch");
        }
        double[] out = buf == null ? new double[0] : size == buf.length ? buf : Arrays.copyOf(buf, size);
        buf = null; // the caller holds the values now; the reservation stays until release()
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
