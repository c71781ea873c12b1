package analytics.engine.stats;

import java.lang.ref.SoftReference;
import java.lang.ref.WeakReference;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Per-thread reusable working copy for the order statistics.
 *
 * <p>A fresh {@code double[]} of 10^6 values is a G1 "humongous" allocation: allocating and
 * zeroing it costs more (≈1.5-2 ms) than copying the data into it (≈0.6 ms) and than a
 * whole mean. Each thread keeps one buffer of up to {@link #MAX_REUSED} values behind a
 * {@link SoftReference}, so the GC can still reclaim it under memory pressure; larger inputs get
 * a fresh array. A kernel takes the buffer, uses it and returns before anything else can run on
 * that thread, so no two users ever share it.
 *
 * <p>A soft reference outlives full collections while the heap has room, and an idle pool thread keeps its
 * buffer until it ends (60 s): after a burst of 16 concurrent 10^6-point summaries that was up to 16 such
 * buffers, which the idle trim's collections could not free (heap 344 -> 96 MiB instead of 32 MiB).
 * {@link #releaseAll()} lets the trim drop them; each thread's next kernel makes a new one.
 */
public final class Scratch {
    private Scratch() {
    }

    /** 2^21 doubles = 16 MiB per thread at most. */
    static final int MAX_REUSED = 1 << 21;

    private static final ThreadLocal<SoftReference<double[]>> BUFFER = new ThreadLocal<>();

    /**
     * Every thread's reference, for {@link #releaseAll()}. Weakly: a thread that ends drops its only strong
     * path to its reference (the thread-local), so its buffer still goes with it, as before.
     */
    private static final Set<WeakReference<SoftReference<double[]>>> ALL = ConcurrentHashMap.newKeySet();

    /**
     * Drops every thread's buffer (the idle trim calls this before its collections). A kernel running now
     * keeps the array it holds; its thread makes a new buffer next time.
     */
    public static void releaseAll() {
        for (WeakReference<SoftReference<double[]>> w : ALL) {
            SoftReference<double[]> ref = w.get();
            if (ref != null) {
                ref.clear();
            }
            ALL.remove(w);
        }
    }

    /** How many buffers are held now (tests). */
    static int held() {
        int n = 0;
        for (WeakReference<SoftReference<double[]>> w : ALL) {
            SoftReference<double[]> ref = w.get();
            n += ref != null && ref.get() != null ? 1 : 0;
        }
        return n;
    }

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
            SoftReference<double[]> fresh = new SoftReference<>(buf);
            BUFFER.set(fresh);
            ALL.removeIf(w -> w.get() == null || w.get() == ref); // ended threads, and this thread's old one
            ALL.add(new WeakReference<>(fresh));
        }
        return buf;
    }
}
