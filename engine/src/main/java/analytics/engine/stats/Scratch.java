package analytics.engine.stats;

import java.lang.ref.SoftReference;
import java.util.Collections;
import java.util.Set;
import java.util.WeakHashMap;

/**
 * Per-thread reusable working memory of the order statistics: a working copy ({@link #buffer}) and
 * {@link BucketSelection}'s histogram ({@link #counts}).
 *
 * <p>A fresh {@code double[]} of 10^6 values is a G1 "humongous" allocation: allocating and
 * zeroing it costs more (≈1.5-2 ms) than copying the data into it (≈0.6 ms) and than a
 * whole mean. Each thread keeps one buffer of up to {@link #MAX_REUSED} values behind a
 * {@link SoftReference}, so the GC can still reclaim it under memory pressure; larger inputs get
 * a fresh array. A kernel takes the buffer, uses it and returns before anything else can run on
 * that thread, so no two users ever share it.
 *
 * <p>The memory stays with its thread only while the engine is busy: {@link #release} (the idle trim,
 * before its collections) drops every thread's arrays, so what a burst on many call threads left
 * behind (a 256 KB histogram each, and a buffer of up to 16 MiB where a bucket was large) is
 * collected instead of living as long as the threads (bench/README.md, "Eighth pass"). A kernel
 * running meanwhile keeps the arrays it already holds; its thread allocates new ones next time.
 */
final class Scratch {
    private Scratch() {
    }

    /** 2^21 doubles = 16 MiB per thread at most. */
    static final int MAX_REUSED = 1 << 21;

    /**
     * One thread's arrays. Plain fields: only the owning thread stores arrays; {@link #release} only stores
     * null, and a thread that still sees an old array may use it (it is its own).
     */
    private static final class Slot {
        SoftReference<double[]> values;
        int[] counts;
    }

    /** Every live thread's slot (weakly: a thread that ends takes its slot with it). */
    private static final Set<Slot> SLOTS = Collections.synchronizedSet(Collections.newSetFromMap(new WeakHashMap<>()));

    private static final ThreadLocal<Slot> SLOT = ThreadLocal.withInitial(() -> {
        Slot s = new Slot();
        SLOTS.add(s);
        return s;
    });

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
        Slot slot = SLOT.get();
        SoftReference<double[]> ref = slot.values;
        double[] buf = ref == null ? null : ref.get();
        if (buf == null || buf.length < n) {
            // grow geometrically so a slowly increasing input size does not reallocate each time
            int size = (int) Math.min(MAX_REUSED, Math.max(n, buf == null ? 0 : 2L * buf.length));
            buf = new double[size];
            slot.values = new SoftReference<>(buf);
        }
        return buf;
    }

    /** This thread's histogram of at least {@code size} counters (contents undefined). */
    static int[] counts(int size) {
        Slot slot = SLOT.get();
        int[] c = slot.counts;
        if (c == null || c.length < size) {
            c = new int[size];
            slot.counts = c;
        }
        return c;
    }

    /** Drops every thread's arrays; the next kernel on each thread allocates new ones. */
    static void release() {
        synchronized (SLOTS) {
            for (Slot s : SLOTS) {
                s.values = null;
                s.counts = null;
            }
        }
    }

    /** How many threads hold arrays now (tests). */
    static int holding() {
        synchronized (SLOTS) {
            int n = 0;
            for (Slot s : SLOTS) {
                if (s.values != null || s.counts != null) {
                    n++;
                }
            }
            return n;
        }
    }
}
