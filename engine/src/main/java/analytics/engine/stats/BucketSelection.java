package analytics.engine.stats;

import java.util.Arrays;

/**
 * Order statistics of large inputs by bucketing instead of a full working copy.
 *
 * <p>Introselect on 10^6 values must first copy all of them (8 MB written) and then partition the
 * copy about twice; for the handful of ranks median/percentile/iqr/summary need, most of that work
 * moves values that are never read. Here each value is mapped to an order-preserving 64-bit key
 * ({@link #key}); the range of keys comes from the numeric minimum and maximum (one cheap pass, or
 * none when the caller has them), one read-only pass builds a histogram of 2^16 equal-width key
 * buckets over that range, the cumulative counts give the bucket of each
 * wanted rank, and a second pass copies only the values of those buckets (typically a few hundred)
 * into a small array, where {@link Selection} places the ranks. The caller's array is only read.
 *
 * <p>A wanted bucket of more than {@link #MIN_DEEP_N} values is bucketed again over its own key range,
 * with about a quarter as many buckets as it holds values (at most 2^16): equal-width key buckets are
 * not equal-count ones (the top key bits are the exponent), so the bucket of a quartile of 10^6 normal
 * values still holds ~9 000 of them, and one more cheap level places its ranks faster than a selection
 * over all of them (bench/README.md, "Eighth pass"). Each level narrows the key range by its bucket
 * bits; a range holding a single key needs no selection at all, and past {@link #MAX_DEPTH} levels (or
 * below {@link #MIN_DEEP_N} values) {@link Selection} places the ranks directly. Results equal
 * {@link Selection#selectAll} on a full copy: both return the value of the requested rank. Keys order
 * -0.0 just below +0.0, a valid order of numerically equal values, so a zero at a rank may carry either
 * sign (as with introselect, whose partitions do not distinguish them either). NaN never reaches the
 * kernels.
 */
final class BucketSelection {
    private BucketSelection() {
    }

    /** Inputs from this size use bucketing; below it a copy and introselect is as fast. */
    static final int MIN_N = 1 << 14;

    /** Buckets per level: 2^BITS at most (the first level of a large input), 2^MIN_BITS at least. */
    private static final int BITS = 16;
    private static final int MIN_BITS = 8;
    /** A wanted bucket of fewer values than this goes to {@link Selection} instead of another level. */
    static final int MIN_DEEP_N = 1 << 10;
    /** 64 key bits, at least {@link #MIN_BITS} per level: deeper levels could only see single-key ranges. */
    private static final int MAX_DEPTH = 64 / MIN_BITS;

    /**
     * Order-preserving key: signed order of the keys = numeric order of the doubles (negative
     * values have all non-sign bits flipped). -0.0 maps to -1, +0.0 to 0.
     */
    static long key(double x) {
        long b = Double.doubleToRawLongBits(x);
        return b ^ ((b >> 63) & Long.MAX_VALUE);
    }

    /**
     * The values of the given ranks (strictly increasing, within [0, d.length)) of d's values,
     * {@code d.length >= MIN_N}; d is not modified.
     */
    static double[] valuesAt(double[] d, int[] ranks) {
        double[] mm = Summation.minMax(d);
        return valuesAt(d, ranks, mm[0], mm[1]);
    }

    /** As {@link #valuesAt(double[], int[])}, with d's numeric minimum and maximum already known. */
    static double[] valuesAt(double[] d, int[] ranks, double min, double max) {
        double[] out = new double[ranks.length];
        valuesAt(d, 0, d.length, ranks, 0, ranks.length, 0, out, 0, minKey(min), maxKey(max), null);
        return out;
    }

    /**
     * As {@link #valuesAt(double[], int[], double, double)}, with the first level's histogram already
     * counted over all of d ({@link Histogram#count} for every value, e.g. in another pass over d).
     */
    static double[] valuesAt(double[] d, int[] ranks, Histogram counted) {
        double[] out = new double[ranks.length];
        valuesAt(d, 0, d.length, ranks, 0, ranks.length, 0, out, 0, counted.minK, counted.maxK, counted);
        return out;
    }

    // The key range from the numeric extremes: the double min/max pass is ~3x cheaper than the same pass
    // over the keys (JFR of the summary load), and summary has them anyway. Only zeros have two keys for
    // one value: a zero extreme widens the range to both of them.
    private static long minKey(double min) {
        return min == 0.0 ? key(-0.0) : key(min);
    }

    private static long maxKey(double max) {
        return max == 0.0 ? key(0.0) : key(max);
    }

    /**
     * One level's equal-width key buckets over [minK, maxK] and their counts (this thread's array,
     * cleared). The first level's can be counted by a pass that reads the values anyway (summary's
     * moment pass: bench/README.md, "Eighth pass"), which saves the level its own read of 10^6 values.
     */
    static final class Histogram {
        final int[] counts;
        final long minK;
        final long maxK;
        final int shift;
        final int buckets;

        private Histogram(int n, long minK, long maxK) {
            this.minK = minK;
            this.maxK = maxK;
            long span = maxK - minK; // unsigned: the full key range can exceed Long.MAX_VALUE
            // about n/4 buckets: log2(n) - 2 bits, within [MIN_BITS, BITS]
            int bits = Math.max(MIN_BITS, Math.min(BITS, 29 - Integer.numberOfLeadingZeros(n)));
            this.shift = Math.max(0, 64 - Long.numberOfLeadingZeros(span) - bits);
            this.buckets = (int) (span >>> shift) + 1;
            // this thread's histogram (256 KB): clearing it is cheaper than allocating it
            this.counts = Scratch.counts(1 << BITS);
            Arrays.fill(counts, 0, buckets, 0);
        }

        /**
         * The first level for the n values of an array with these numeric extremes, or null when bucketing
         * does not apply (fewer than {@link #MIN_N} values, or a single key: then {@link Selection#valuesAt}).
         */
        static Histogram firstLevel(int n, double min, double max) {
            long minK = minKey(min);
            long maxK = maxKey(max);
            return n < MIN_N || minK == maxK ? null : new Histogram(n, minK, maxK);
        }

        /** Counts x, one of the values within [minK, maxK]. */
        void count(double x) {
            counts[(int) ((key(x) - minK) >>> shift)]++;
        }
    }

    /**
     * a[from, to) holds the values of global ranks [rankBase, rankBase + to - from); fills
     * out[i] for i in [rFrom, rTo) with the value of rank ranks[i]. At depth 0 a is the caller's
     * array (read only); deeper, a is this class's own copy and may be rearranged.
     */
    private static void valuesAt(double[] a, int from, int to, int[] ranks, int rFrom, int rTo,
            int rankBase, double[] out, int depth, long minKey, long maxKey, Histogram counted) {
        int n = to - from;
        if (depth > 0 && (n < MIN_DEEP_N || depth >= MAX_DEPTH)) {
            int[] local = new int[rTo - rFrom];
            for (int i = 0; i < local.length; i++) {
                local[i] = from + ranks[rFrom + i] - rankBase;
            }
            Selection.selectAll(a, from, to - 1, local, 0, local.length);
            for (int i = 0; i < local.length; i++) {
                out[rFrom + i] = a[local[i]];
            }
            return;
        }
        long minK = minKey;
        long maxK = maxKey;
        if (depth > 0) {
            minK = key(a[from]);
            maxK = minK;
            for (int i = from + 1; i < to; i++) {
                long k = key(a[i]);
                minK = Math.min(minK, k);
                maxK = Math.max(maxK, k);
            }
        }
        if (minK == maxK) {
            // one key: every rank has this value (equal keys are equal bits); at depth 0 only when no
            // extreme is a zero, so a[from] holds that key
            Arrays.fill(out, rFrom, rTo, a[from]);
            return;
        }
        Histogram h = counted;
        if (h == null) {
            h = new Histogram(n, minK, maxK);
            for (int i = from; i < to; i++) {
                h.count(a[i]);
            }
        }
        int[] counts = h.counts;
        int shift = h.shift;
        int buckets = h.buckets;

        // the bucket of each wanted rank, from the cumulative counts; ranks ascend, so do buckets
        int nr = rTo - rFrom;
        int[] wBucket = new int[nr];
        int[] wSize = new int[nr];
        int[] wBase = new int[nr]; // global rank of the bucket's first value
        int[] wRankEnd = new int[nr]; // ranks [previous end, wRankEnd[w]) fall in bucket w
        int nw = 0;
        int b = 0;
        int below = 0; // values in buckets < b
        for (int ri = rFrom; ri < rTo; ri++) {
            int local = ranks[ri] - rankBase;
            while (below + counts[b] <= local) {
                below += counts[b];
                b++;
            }
            if (nw == 0 || wBucket[nw - 1] != b) {
                wBucket[nw] = b;
                wSize[nw] = counts[b];
                wBase[nw] = rankBase + below;
                nw++;
            }
            wRankEnd[nw - 1] = ri + 1;
        }

        // copy the wanted buckets' values, each bucket into its own region in bucket order; the
        // histogram becomes the write-position table (-1 = not wanted)
        int total = 0;
        Arrays.fill(counts, 0, buckets, -1);
        int[] wOff = new int[nw];
        for (int w = 0; w < nw; w++) {
            wOff[w] = total;
            counts[wBucket[w]] = total;
            total += wSize[w];
        }
        // depth 0 may use this thread's scratch buffer; deeper levels read from it
        double[] tmp = depth == 0 ? Scratch.buffer(total) : new double[total];
        for (int i = from; i < to; i++) {
            double x = a[i];
            int idx = (int) ((key(x) - minK) >>> shift);
            int p = counts[idx];
            if (p >= 0) {
                tmp[p] = x;
                counts[idx] = p + 1;
            }
        }
        int rStart = rFrom;
        for (int w = 0; w < nw; w++) {
            valuesAt(tmp, wOff[w], wOff[w] + wSize[w], ranks, rStart, wRankEnd[w], wBase[w], out,
                    depth + 1, 0, 0, null);
            rStart = wRankEnd[w];
        }
    }
}
