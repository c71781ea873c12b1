package analytics.engine.stats;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The {@code mode} kernel (semantics in {@link NativeStatistics}): bins the values, counts the bins,
 * reports the most frequent ones. Counting is by a small hash table while the distinct bins fit in
 * cache, and by LSD radix sort of order-preserving keys beyond that; each mode is reported as the
 * last raw value seen in its bin, as the earlier engine answered v7 clients.
 */
final class Mode {
    private Mode() {
    }

    /**
     * The mode bin of x, as the earlier engine formed it: x*1e6 rounded half away from zero, /1e6
     * (a value in the bin's own units, so bins sort like the values); -0.0 normalised to 0.0. A
     * value too large to scale is already an integer and is its own bin.
     */
    static double bin(double x) {
        double y = x * 1e6;
        if (Double.isInfinite(y)) {
            return x; // |x| > 1.7e302: already an integer, its own bin
        }
        // rint (one instruction) rounds half to even; only exact ties (y - r exact, +-0.5) differ
        // from half away from zero, and they are rare, so the branch is predictable
        double r = Math.rint(y);
        if (Math.abs(y - r) == 0.5) {
            r = y + Math.copySign(0.5, y);
        }
        return r / 1e6 + 0.0;
    }

    static Object compute(double[] d, Map<String, String> p) {
        int n = d.length;
        // Few distinct bins (the usual case for a mode): a small hash table that stays in cache,
        // counts only; the modes' last raw values come from a short scan from the end. Once it
        // would outgrow the cache, counting by sorting is faster: LSD radix sort of the bins
        // (streaming passes, no random access into a 10^6-slot table).
        CountTable t = new CountTable();
        for (int i = 0; i < n; i++) {
            if (!t.add(Double.doubleToRawLongBits(bin(d[i])))) {
                return modeBySorting(d);
            }
        }
        return modeResult(lastRawValues(d, t.modes(), t.best), t.best, n);
    }

    /**
     * Each mode reported as the last raw value seen in its bin (the earlier engine's answer): one
     * scan from the end that stops once every mode bin has been met, usually after a few values.
     * With frequency 1 every value is its own bin's only member, so the values themselves are the
     * answer (at most {@link CountTable#MAX_CAP} of them on this path). {@code bins} ascending; the
     * result is in the same order.
     */
    private static double[] lastRawValues(double[] d, double[] bins, int frequency) {
        int k = bins.length;
        if (frequency == 1) {
            double[] out = d.clone(); // k == n: every bin holds one value
            Arrays.sort(out);
            return out;
        }
        double[] out = new double[k];
        boolean[] found = new boolean[k];
        int left = k;
        for (int i = d.length - 1; i >= 0 && left > 0; i--) {
            int j = Arrays.binarySearch(bins, bin(d[i]));
            if (j >= 0 && !found[j]) {
                found[j] = true;
                out[j] = d[i];
                left--;
            }
        }
        return out;
    }

    /**
     * Open-addressing hash of the bins' bit patterns to their counts, no boxing: key and count
     * interleaved in one {@code long[]} so a probe touches one cache line. It starts at 4096 slots
     * and doubles at half load up to {@link #MAX_CAP} slots (2 MiB); {@link #add} returns false
     * when more distinct bins arrive than that holds.
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

        /** The bins with the highest count, ascending. */
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
     * Mode by sorting: the bins mapped to order-preserving unsigned keys, LSD radix sorted 8 bits
     * at a time together with their positions (a pass whose digit is the same for every key is
     * skipped, which for data in a limited range is most of the exponent bits), then one scan
     * over the runs. The sort is stable, so the last position of a run is the last raw value seen
     * in that bin (no second pass: here there may be ~n modes); the modes come out ascending.
     */
    private static Object modeBySorting(double[] d) {
        int n = d.length;
        long[] a = new long[n];
        long[] b = new long[n];
        int[] ai = new int[n];
        int[] bi = new int[n];
        int[][] hist = new int[8][256];
        for (int i = 0; i < n; i++) {
            long bits = Double.doubleToRawLongBits(bin(d[i]));
            // signed order of doubles -> unsigned order of longs
            long u = (bits ^ ((bits >> 63) & 0x7FFFFFFFFFFFFFFFL)) ^ Long.MIN_VALUE;
            a[i] = u;
            ai[i] = i;
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
                int dst = h[(int) (u >>> shift) & 0xFF]++;
                b[dst] = u;
                bi[dst] = ai[i];
            }
            long[] t = a;
            a = b;
            b = t;
            int[] ti = ai;
            ai = bi;
            bi = ti;
        }
        int best = 0;
        int nModes = 0;
        double[] modes = new double[16];
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
                if (nModes == modes.length) {
                    modes = Arrays.copyOf(modes, 2 * nModes);
                }
                modes[nModes++] = d[ai[j - 1]];
            }
            i = j;
        }
        return modeResult(Arrays.copyOf(modes, nModes), best, n);
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
}
