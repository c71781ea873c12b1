package analytics.engine.stats;

/**
 * Accurate, allocation-free sums over {@code double[]} ranges.
 *
 * <p>All sums use numpy's pairwise summation: a range of more than 128 values is split in two
 * (the split point rounded down to a multiple of 8) and the halves are summed recursively; a leaf
 * of 8..128 values is summed with 8 interleaved accumulators combined as
 * {@code ((r0+r1)+(r2+r3))+((r4+r5)+(r6+r7))}, and fewer than 8 values sequentially. This is the
 * exact order of {@code numpy.add.reduce} on a contiguous float64 array, so {@link #sum} reproduces
 * numpy's sum (and therefore {@code np.mean}) bit for bit, has an error bound of
 * O(eps log n) instead of O(eps n), and keeps 8 independent dependency chains for the CPU.
 *
 * <p>Central moments are two-pass: the mean first, then sums of powers of {@code x - mean}
 * (no {@code E[x^2] - E[x]^2} cancellation), again in the same pairwise order as
 * {@code np.mean((x - m)**2)} / scipy's {@code _moment}.
 */
final class Summation {
    private Summation() {
    }

    static final int BLOCK = 128;

    /** numpy-order pairwise sum of {@code a[off, off+n)}. */
    static double sum(double[] a, int off, int n) {
        if (n < 8) {
            double res = 0.0;   // numpy starts a short run from -0.0; identical for any non-empty sum of finite data
            for (int i = off; i < off + n; i++) {
                res += a[i];
            }
            return n == 0 ? 0.0 : res;
        } else if (n <= BLOCK) {
            double r0 = a[off], r1 = a[off + 1], r2 = a[off + 2], r3 = a[off + 3];
            double r4 = a[off + 4], r5 = a[off + 5], r6 = a[off + 6], r7 = a[off + 7];
            int end8 = off + n - (n % 8);
            int i = off + 8;
            for (; i < end8; i += 8) {
                r0 += a[i];
                r1 += a[i + 1];
                r2 += a[i + 2];
                r3 += a[i + 3];
                r4 += a[i + 4];
                r5 += a[i + 5];
                r6 += a[i + 6];
                r7 += a[i + 7];
            }
            double res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7));
            for (; i < off + n; i++) {
                res += a[i];
            }
            return res;
        } else {
            int n2 = n / 2;
            n2 -= n2 % 8;
            return sum(a, off, n2) + sum(a, off + n2, n - n2);
        }
    }

    /** Minimum of a non-empty array (finite data: plain comparisons, 4 independent chains). */
    static double min(double[] a) {
        int n = a.length;
        double m0 = a[0], m1 = a[0], m2 = a[0], m3 = a[0];
        int i = 0;
        for (; i + 3 < n; i += 4) {
            double x0 = a[i], x1 = a[i + 1], x2 = a[i + 2], x3 = a[i + 3];
            m0 = x0 < m0 ? x0 : m0;
            m1 = x1 < m1 ? x1 : m1;
            m2 = x2 < m2 ? x2 : m2;
            m3 = x3 < m3 ? x3 : m3;
        }
        for (; i < n; i++) {
            m0 = a[i] < m0 ? a[i] : m0;
        }
        m0 = m1 < m0 ? m1 : m0;
        m2 = m3 < m2 ? m3 : m2;
        return m2 < m0 ? m2 : m0;
    }

    /**
     * {min, max} of a non-empty array in one pass. A new extreme is rare after the first values, so a
     * predicted branch beats four compare-and-select chains per bound (10^6 normal values: 320 vs 434 µs;
     * bench/README.md, "Eighth pass"). Ties keep the first value seen (a -0.0 after a 0.0 minimum stays out).
     */
    static double[] minMax(double[] a) {
        double lo = a[0];
        double hi = a[0];
        for (int i = 1; i < a.length; i++) {
            double x = a[i];
            if (x < lo) {
                lo = x;
            } else if (x > hi) {
                hi = x;
            }
        }
        return new double[] {lo, hi};
    }

    /** Maximum of a non-empty array. */
    static double max(double[] a) {
        int n = a.length;
        double m0 = a[0], m1 = a[0], m2 = a[0], m3 = a[0];
        int i = 0;
        for (; i + 3 < n; i += 4) {
            double x0 = a[i], x1 = a[i + 1], x2 = a[i + 2], x3 = a[i + 3];
            m0 = x0 > m0 ? x0 : m0;
            m1 = x1 > m1 ? x1 : m1;
            m2 = x2 > m2 ? x2 : m2;
            m3 = x3 > m3 ? x3 : m3;
        }
        for (; i < n; i++) {
            m0 = a[i] > m0 ? a[i] : m0;
        }
        m0 = m1 > m0 ? m1 : m0;
        m2 = m3 > m2 ? m3 : m2;
        return m2 > m0 ? m2 : m0;
    }

    /**
     * Pass 2 for the variance: {@code out[0] = sum(d)}, {@code out[1] = sum(d^2)} with d = x - m,
     * both in numpy's pairwise order (sum(d^2) is bit-identical to numpy's
     * {@code sum((x - m)**2)}). sum(d) is the rounding error of m times n: the caller uses it
     * for the "corrected two-pass" variance sum(d^2) - sum(d)^2/n (Chan, Golub &amp; LeVeque), which
     * removes the error of the rounded mean; for ordinary data that correction is below half an
     * ulp and the result stays numpy's, for data whose spread is a few thousand ulps of their
     * mean (1 + k·1e-12) it is what makes the variance exact instead of off by ~1e-10.
     */
    static void deviations(double[] a, double m, double[] out) {
        DevPass p = new DevPass(a, m, false, null);
        p.run(0, a.length, 0);
        out[0] = p.scratch[0];
        out[1] = p.scratch[1];
    }

    /**
     * The central-moment pass: pairwise sums of d, d^2, d^3 = d^2*d and d^4 = (d^2)^2 with
     * d = x - m (scipy's {@code _moment} terms, in numpy's pairwise order) into {@code out[0..3]},
     * and the lag-1 products P = sum_{i=1}^{n-1} d_{i-1} d_i (for the autocorrelation) into
     * {@code out[4]}, in the same read of each value: P costs a product per value, where a loop of
     * its own cost as much as the four moments together (bench/README.md, "Eighth pass").
     */
    static void moments(double[] a, double m, double[] out) {
        moments(a, m, out, null);
    }

    /**
     * As {@link #moments(double[], double, double[])}, and counts every value into {@code hist} (the order
     * statistics' first level, when not null) in the same loop: the counting's integer work runs beside the
     * moments' floating-point work, where a pass of its own read all values again (bench/README.md, "Eighth
     * pass": 10^6 values, 1.38 ms for the two loops, 0.80 ms fused).
     */
    static void moments(double[] a, double m, double[] out, BucketSelection.Histogram hist) {
        DevPass p = new DevPass(a, m, true, hist);
        p.run(0, a.length, 0);
        System.arraycopy(p.scratch, 0, out, 0, K_MOMENTS);
    }

    /** How many sums {@link #moments} writes. */
    static final int K_MOMENTS = 5;

    private static final class DevPass {
        private static final int K = K_MOMENTS;
        final double[] a;
        final double m;
        final boolean high;
        final BucketSelection.Histogram hist;
        final double[] scratch;

        DevPass(double[] a, double m, boolean high, BucketSelection.Histogram hist) {
            this.a = a;
            this.m = m;
            this.high = high;
            this.hist = hist;
            this.scratch = new double[K * 40];
        }

        /** Sums over [off, off+len) into scratch[depth*K ..]. */
        void run(int off, int len, int depth) {
            int base = depth * K;
            if (len > BLOCK) {
                int n2 = len / 2;
                n2 -= n2 % 8;
                run(off, n2, depth + 1);
                int c = base + K;
                double s1 = scratch[c], s2 = scratch[c + 1], s3 = scratch[c + 2], s4 = scratch[c + 3];
                double p = scratch[c + 4];
                run(off + n2, len - n2, depth + 1);
                scratch[base] = s1 + scratch[c];
                scratch[base + 1] = s2 + scratch[c + 1];
                scratch[base + 2] = s3 + scratch[c + 2];
                scratch[base + 3] = s4 + scratch[c + 3];
                scratch[base + 4] = p + scratch[c + 4];
                return;
            }
            if (high) {
                leaf4(off, len, base);
            } else {
                leaf2(off, len, base);
            }
        }

        private void leaf2(int off, int len, int base) {
            final double[] a = this.a;
            final double m = this.m;
            double s1;
            double s2;
            int end = off + len;
            if (len < 8) {
                s1 = 0.0;
                s2 = 0.0;
                for (int i = off; i < end; i++) {
                    double d = a[i] - m;
                    s1 += d;
                    s2 += d * d;
                }
            } else {
                double d0 = a[off] - m, d1 = a[off + 1] - m, d2 = a[off + 2] - m, d3 = a[off + 3] - m;
                double d4 = a[off + 4] - m, d5 = a[off + 5] - m, d6 = a[off + 6] - m, d7 = a[off + 7] - m;
                double r0 = d0 * d0, r1 = d1 * d1, r2 = d2 * d2, r3 = d3 * d3;
                double r4 = d4 * d4, r5 = d5 * d5, r6 = d6 * d6, r7 = d7 * d7;
                double e0 = (d0 + d1) + (d2 + d3);
                double e1 = (d4 + d5) + (d6 + d7);
                int end8 = end - (len % 8);
                int i = off + 8;
                for (; i < end8; i += 8) {
                    d0 = a[i] - m;
                    d1 = a[i + 1] - m;
                    d2 = a[i + 2] - m;
                    d3 = a[i + 3] - m;
                    d4 = a[i + 4] - m;
                    d5 = a[i + 5] - m;
                    d6 = a[i + 6] - m;
                    d7 = a[i + 7] - m;
                    r0 += d0 * d0;
                    r1 += d1 * d1;
                    r2 += d2 * d2;
                    r3 += d3 * d3;
                    r4 += d4 * d4;
                    r5 += d5 * d5;
                    r6 += d6 * d6;
                    r7 += d7 * d7;
                    e0 += (d0 + d1) + (d2 + d3);
                    e1 += (d4 + d5) + (d6 + d7);
                }
                s2 = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7));
                s1 = e0 + e1;
                for (; i < end; i++) {
                    double d = a[i] - m;
                    s1 += d;
                    s2 += d * d;
                }
            }
            scratch[base] = s1;
            scratch[base + 1] = s2;
        }

        private void leaf4(int off, int len, int base) {
            final double[] a = this.a;
            final double m = this.m;
            final BucketSelection.Histogram h = this.hist; // loop-invariant: C2 unswitches the loops on it
            double s1;
            double s2;
            double s3;
            double s4;
            double p;
            int end = off + len;
            // the lag product of the leaf's first value takes the value before it (none before a[0])
            double prev = off > 0 ? a[off - 1] - m : 0.0;
            if (len < 8) {
                s1 = 0.0;
                s2 = 0.0;
                s3 = 0.0;
                s4 = 0.0;
                p = 0.0;
                for (int i = off; i < end; i++) {
                    if (h != null) {
                        h.count(a[i]);
                    }
                    double d = a[i] - m;
                    double dd = d * d;
                    s1 += d;
                    s2 += dd;
                    s3 += dd * d;
                    s4 += dd * dd;
                    p += prev * d;
                    prev = d;
                }
            } else {
                if (h != null) {
                    for (int i = off; i < off + 8; i++) {
                        h.count(a[i]);
                    }
                }
                double d0 = a[off] - m, d1 = a[off + 1] - m, d2 = a[off + 2] - m, d3 = a[off + 3] - m;
                double d4 = a[off + 4] - m, d5 = a[off + 5] - m, d6 = a[off + 6] - m, d7 = a[off + 7] - m;
                double q0 = d0 * d0, q1 = d1 * d1, q2 = d2 * d2, q3 = d3 * d3;
                double q4 = d4 * d4, q5 = d5 * d5, q6 = d6 * d6, q7 = d7 * d7;
                double e0 = (d0 + d1) + (d2 + d3);
                double e1 = (d4 + d5) + (d6 + d7);
                double a0 = q0, a1 = q1, a2 = q2, a3 = q3, a4 = q4, a5 = q5, a6 = q6, a7 = q7;
                double b0 = q0 * d0, b1 = q1 * d1, b2 = q2 * d2, b3 = q3 * d3;
                double b4 = q4 * d4, b5 = q5 * d5, b6 = q6 * d6, b7 = q7 * d7;
                double c0 = q0 * q0, c1 = q1 * q1, c2 = q2 * q2, c3 = q3 * q3;
                double c4 = q4 * q4, c5 = q5 * q5, c6 = q6 * q6, c7 = q7 * q7;
                // lag products of the 8 values with their predecessors, summed as a tree in two chains
                double p0 = (prev * d0 + d0 * d1) + (d1 * d2 + d2 * d3);
                double p1 = (d3 * d4 + d4 * d5) + (d5 * d6 + d6 * d7);
                int end8 = end - (len % 8);
                int i = off + 8;
                for (; i < end8; i += 8) {
                    if (h != null) {
                        h.count(a[i]);
                        h.count(a[i + 1]);
                        h.count(a[i + 2]);
                        h.count(a[i + 3]);
                        h.count(a[i + 4]);
                        h.count(a[i + 5]);
                        h.count(a[i + 6]);
                        h.count(a[i + 7]);
                    }
                    prev = d7;
                    d0 = a[i] - m;
                    d1 = a[i + 1] - m;
                    d2 = a[i + 2] - m;
                    d3 = a[i + 3] - m;
                    d4 = a[i + 4] - m;
                    d5 = a[i + 5] - m;
                    d6 = a[i + 6] - m;
                    d7 = a[i + 7] - m;
                    e0 += (d0 + d1) + (d2 + d3);
                    e1 += (d4 + d5) + (d6 + d7);
                    q0 = d0 * d0;
                    q1 = d1 * d1;
                    q2 = d2 * d2;
                    q3 = d3 * d3;
                    q4 = d4 * d4;
                    q5 = d5 * d5;
                    q6 = d6 * d6;
                    q7 = d7 * d7;
                    a0 += q0;
                    a1 += q1;
                    a2 += q2;
                    a3 += q3;
                    a4 += q4;
                    a5 += q5;
                    a6 += q6;
                    a7 += q7;
                    b0 += q0 * d0;
                    b1 += q1 * d1;
                    b2 += q2 * d2;
                    b3 += q3 * d3;
                    b4 += q4 * d4;
                    b5 += q5 * d5;
                    b6 += q6 * d6;
                    b7 += q7 * d7;
                    c0 += q0 * q0;
                    c1 += q1 * q1;
                    c2 += q2 * q2;
                    c3 += q3 * q3;
                    c4 += q4 * q4;
                    c5 += q5 * q5;
                    c6 += q6 * q6;
                    c7 += q7 * q7;
                    p0 += (prev * d0 + d0 * d1) + (d1 * d2 + d2 * d3);
                    p1 += (d3 * d4 + d4 * d5) + (d5 * d6 + d6 * d7);
                }
                s1 = e0 + e1;
                s2 = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
                s3 = ((b0 + b1) + (b2 + b3)) + ((b4 + b5) + (b6 + b7));
                s4 = ((c0 + c1) + (c2 + c3)) + ((c4 + c5) + (c6 + c7));
                p = p0 + p1;
                prev = d7;
                for (; i < end; i++) {
                    if (h != null) {
                        h.count(a[i]);
                    }
                    double d = a[i] - m;
                    double dd = d * d;
                    s1 += d;
                    s2 += dd;
                    s3 += dd * d;
                    s4 += dd * dd;
                    p += prev * d;
                    prev = d;
                }
            }
            scratch[base] = s1;
            scratch[base + 1] = s2;
            scratch[base + 2] = s3;
            scratch[base + 3] = s4;
            scratch[base + 4] = p;
        }
    }
}
