package analytics.engine.stats;

import java.util.Arrays;

/**
 * Order statistics by in-place introselect (on a private copy).
 *
 * <p>{@link #select} is Floyd-Rivest selection (sample-based pivot, then a Hoare partition that
 * splits runs of equal values evenly, so duplicate-heavy data stays linear); expected linear time
 * with about n + min(k, n-k) comparisons. A budget of 2·log2(n) partitions guards against
 * adversarial inputs: when it runs out the remaining range is sorted, so the worst case is
 * O(n log n), never quadratic. Selecting the first or last rank of a range is a linear min/max scan.
 *
 * <p>{@link #selectAll} places several ranks at once the way {@code numpy.partition} with a list of
 * kth does: each selection narrows the ranges of the others, so the median, q25 and q75 of
 * {@code summary} cost about two quickselects, not three.
 *
 * <p>The kernels call {@link #valuesAt}, which uses this on a scratch copy for small inputs and
 * {@link BucketSelection} (no full copy) from {@link BucketSelection#MIN_N} values.
 */
final class Selection {
    private Selection() {
    }

    private static final int INSERTION = 16;
    private static final int SAMPLE_THRESHOLD = 600;

    /**
     * Rearranges {@code a[lo..hi]} (inclusive) so that {@code a[k]} holds the value of rank k, all of
     * {@code a[lo..k-1]} are {@code <= a[k]} and all of {@code a[k+1..hi]} are {@code >= a[k]}.
     * Precondition: the range already holds exactly the values of ranks lo..hi.
     */
    static void select(double[] a, int lo, int hi, int k) {
        if (k == lo) {
            minToFront(a, lo, hi);
            return;
        }
        if (k == hi) {
            maxToBack(a, lo, hi);
            return;
        }
        floydRivest(a, lo, hi, k, 2 * (32 - Integer.numberOfLeadingZeros(hi - lo + 1)));
    }

    /**
     * Floyd &amp; Rivest's SELECT (CACM 1975, Algorithm 489): on a large range, first select k's
     * counterpart inside a small sample window around k (recursively), which leaves a pivot at
     * a[k] that is very close to the wanted rank; one partition of the whole range then discards
     * almost everything. Expected comparisons n + min(k, n-k) + o(n), about half of median-of-3
     * quickselect. Partitioning stops on equal keys from both sides, so runs of duplicates split
     * evenly. {@code budget} bounds the number of partitions; past it the range is sorted
     * (O(n log n) worst case instead of quadratic).
     */
    private static void floydRivest(double[] a, int lo, int hi, int k, int budget) {
        while (hi > lo) {
            if (hi - lo < INSERTION) {
                insertionSort(a, lo, hi);
                return;
            }
            if (budget-- <= 0) {
                Arrays.sort(a, lo, hi + 1);
                return;
            }
            if (hi - lo > SAMPLE_THRESHOLD) {
                double n = hi - lo + 1;
                double i = k - lo + 1;
                double z = Math.log(n);
                double s = 0.5 * Math.exp(2 * z / 3);
                double sd = 0.5 * Math.sqrt(z * s * (n - s) / n) * Math.signum(i - n / 2);
                int newLo = (int) Math.max(lo, Math.floor(k - i * s / n + sd));
                int newHi = (int) Math.min(hi, Math.floor(k + (n - i) * s / n + sd));
                if (newLo <= k && k <= newHi && newLo < newHi && (newLo > lo || newHi < hi)) {
                    floydRivest(a, newLo, newHi, k, budget);
                }
            } else {
                // median of (lo, mid, hi) to position k as the pivot
                int mid = (lo + hi) >>> 1;
                swap(a, k, med3(a, lo, mid, hi));
            }
            double t = a[k];
            int i = lo;
            int j = hi;
            swap(a, lo, k);
            if (a[hi] > t) {
                swap(a, hi, lo);
            }
            // now a[lo] <= t <= a[hi] (one of them is t): sentinels for both scans
            while (i < j) {
                swap(a, i, j);
                i++;
                j--;
                while (a[i] < t) {
                    i++;
                }
                while (a[j] > t) {
                    j--;
                }
            }
            if (a[lo] == t) {
                swap(a, lo, j);
            } else {
                j++;
                swap(a, j, hi);
            }
            // a[lo..j-1] <= t == a[j] <= a[j+1..hi]
            if (j <= k) {
                lo = j + 1;
            }
            if (k <= j) {
                hi = j - 1;
            }
        }
    }

    /**
     * Places every rank in {@code ranks[from, to)} (strictly increasing, all within [lo, hi]), each
     * with the guarantee of {@link #select}.
     */
    static void selectAll(double[] a, int lo, int hi, int[] ranks, int from, int to) {
        if (from >= to || lo > hi) {
            return;
        }
        int mid = (from + to) >>> 1;
        int k = ranks[mid];
        select(a, lo, hi, k);
        selectAll(a, lo, k - 1, ranks, from, mid);
        selectAll(a, k + 1, hi, ranks, mid + 1, to);
    }

    /**
     * The values of {@code ranks} (strictly increasing, within [0, d.length)) of d's values, in the
     * same order; d is not modified. Large inputs use {@link BucketSelection} (no full copy), small
     * ones introselect on this thread's scratch copy.
     */
    static double[] valuesAt(double[] d, int[] ranks) {
        if (d.length >= BucketSelection.MIN_N) {
            return BucketSelection.valuesAt(d, ranks);
        }
        return selectOnCopy(d, ranks);
    }

    /** As {@link #valuesAt(double[], int[])}, with d's numeric minimum and maximum already known. */
    static double[] valuesAt(double[] d, int[] ranks, double min, double max) {
        if (d.length >= BucketSelection.MIN_N) {
            return BucketSelection.valuesAt(d, ranks, min, max);
        }
        return selectOnCopy(d, ranks);
    }

    private static double[] selectOnCopy(double[] d, int[] ranks) {
        int n = d.length;
        double[] c = Scratch.copyOf(d);
        selectAll(c, 0, n - 1, ranks, 0, ranks.length);
        double[] out = new double[ranks.length];
        for (int i = 0; i < ranks.length; i++) {
            out[i] = c[ranks[i]];
        }
        return out;
    }

    /**
     * numpy's default ('linear') quantile q of n values: virtual index (n-1)·q, neighbours floor
     * and floor+1 (both the last element at or beyond the end), and numpy's {@code _lerp}, which
     * interpolates from the nearer neighbour. {@code values[i]} is the value of rank
     * {@code ranks[i]}; ranks must include {@link #quantileRanks}(n, q).
     */
    static double quantileOf(int n, double q, int[] ranks, double[] values) {
        double vi = (n - 1) * q;
        double prevIdx = Math.floor(vi);
        int prev;
        int next;
        if (vi >= n - 1) {
            prev = n - 1;
            next = n - 1;
        } else {
            prev = (int) prevIdx;
            next = prev + 1;
        }
        double gamma = vi - prevIdx;
        return lerp(valueOfRank(ranks, values, prev), valueOfRank(ranks, values, next), gamma);
    }

    /** The value of rank r from the parallel arrays of {@link #valuesAt}. */
    static double valueOfRank(int[] ranks, double[] values, int r) {
        int i = Arrays.binarySearch(ranks, r);
        if (i < 0) {
            throw new IllegalArgumentException("rank " + r + " was not selected");
        }
        return values[i];
    }

    /** The (one or two) ranks {@link #quantileOf} reads for quantile q of n values. */
    static int[] quantileRanks(int n, double q) {
        double vi = (n - 1) * q;
        if (vi >= n - 1) {
            return new int[] {n - 1};
        }
        int prev = (int) Math.floor(vi);
        return new int[] {prev, prev + 1};
    }

    /** numpy's {@code _lerp(a, b, t)}. */
    static double lerp(double a, double b, double t) {
        double diff = b - a;
        if (t >= 0.5) {
            return b - diff * (1 - t);
        }
        return a + diff * t;
    }

    /** numpy's median of two middle values: {@code mean([a, b])} = (a + b) / 2, overflow-safe. */
    static double midpoint(double a, double b) {
        double s = a + b;
        if (Double.isInfinite(s)) {
            return a * 0.5 + b * 0.5;
        }
        return s / 2.0;
    }

    private static int med3(double[] a, int i, int j, int k) {
        double x = a[i];
        double y = a[j];
        double z = a[k];
        return x < y ? (y < z ? j : (x < z ? k : i)) : (x < z ? i : (y < z ? k : j));
    }

    private static void minToFront(double[] a, int lo, int hi) {
        int best = lo;
        double v = a[lo];
        for (int i = lo + 1; i <= hi; i++) {
            if (a[i] < v) {
                v = a[i];
                best = i;
            }
        }
        swap(a, lo, best);
    }

    private static void maxToBack(double[] a, int lo, int hi) {
        int best = hi;
        double v = a[hi];
        for (int i = lo; i < hi; i++) {
            if (a[i] > v) {
                v = a[i];
                best = i;
            }
        }
        swap(a, hi, best);
    }

    private static void insertionSort(double[] a, int lo, int hi) {
        for (int i = lo + 1; i <= hi; i++) {
            double v = a[i];
            int j = i - 1;
            while (j >= lo && a[j] > v) {
                a[j + 1] = a[j];
                j--;
            }
            a[j + 1] = v;
        }
    }

    private static void swap(double[] a, int i, int j) {
        double t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}
