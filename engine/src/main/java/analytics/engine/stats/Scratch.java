package analytics.engine.stats;

import java.lang.ref.SoftReference;

/**
 * Per-thread reusable working copy for the order statistics.
 *
 * <p>A fresh {@code double[]} of 10^6 values is a G1 "humongous" allocation: allocating and
 * zeroing it costs more (≈1.5-2 ms) than copying the data into it (≈0.6 ms) and than a
 * whole mean. Each thread keeps one buffer of up to {@link #MAX_REUSED} values behind a
 * {@link SoftReference}, so the GC can still reclaim it under memory pressure; larger inputs get
 * a fresh array. A kernel takes the buffer, uses it and returns before anything else can run on
 * that thread, so no two users ever share it.
 */
final class Scratch {
    private Scratch() {
    }

    /** 2^21 doubles = 16 MiB per thread at most. */
    static final int MAX_REUSED = 1 << 21;

    private static final ThreadLocal<SoftReference<double[]>> BUFFER = new ThreadLocal<>();

    /** A private copy of {@code d} in an array of length {@code >= d.length}. */
    static double[] copyOf(double[] d) {
        int n = d.length;
        if (n > MAX_REUSED) {
            return d.clone();
        }
        double[] buf = buffer(n);
        System.arraycopy(d, 0, buf, 0, n);
        return buf;
    }

    /** This thread's buffer of length {@code >= n} (contents undefined; a fresh array beyond {@link #MAX_REUSED}). */
    static double[] buffer(int n) {
        if (n > MAX_REUSED) {
            return new double[n];
        }
        SoftReference<double[]> ref = BUFFER.get();
        double[] buf = ref == null ? null : ref.get();
        if (buf == null || buf.length < n) {
            // grow geometrically so a slowly increasing input size does not reallocate each time
            int size = (int) Math.min(MAX_REUSED, Math.max(n, buf == null ? 0 : 2L * buf.length));
            buf = new double[size];
            BUFFER.set(new SoftReference<>(buf));
        }
        return buf;
    }
}
