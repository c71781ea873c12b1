package analytics.engine.stats.streaming;

import analytics.engine.api.AnalysisException;
import analytics.engine.stats.NativeKernel;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;

/**
 * One streamed native statistic: takes values chunk by chunk and answers at the end, like the
 * one-shot kernel would for the whole series.
 *
 * <ul>
 *   <li>count, mean, std, variance, min, max, range, skewness, kurtosis, correlation (lag-1) and the
 *       moment part of summary: {@link StreamingMoments}, constant memory.
 *   <li>median, percentile, q1, q3, iqr and summary's median/q25/q75: {@link StreamingQuantiles} —
 *       exact (through the one-shot kernels, so identical answers) while the series fits
 *       {@code exactMaxPoints}, a KLL sketch beyond, with {@code quantile_method} and
 *       {@code rank_error} reported.
 * </ul>
 * NaN/Inf follow the request's {@code nan_policy}: {@code raise} (default) rejects the stream at the
 * first one, naming its position; {@code omit} drops them and counts them.
 */
public final class StreamAccumulator {

    /** Statistics computed incrementally; everything else needs the whole series in memory. */
    public static final Set<String> STREAMABLE = Set.of("count", "mean", "std", "variance", "min", "max",
            "range", "skewness", "kurtosis", "correlation", "summary", "median", "percentile", "q1", "q3", "iqr");
    private static final Set<String> QUANTILES = Set.of("median", "percentile", "q1", "q3", "iqr", "summary");
    private static final Set<String> NO_MOMENTS = Set.of("median", "percentile", "q1", "q3", "iqr");
    private static final int BLOCK = 4096;

    /** The answer: the result object (as a kernel returns it) and entries for metadata.stats. */
    public record Result(Object value, Map<String, String> stats) {
    }

    private final String algorithm;
    private final Map<String, String> params;
    private final Map<String, NativeKernel> kernels;
    private final int minPoints;
    private final boolean omitNonFinite;
    private final double q; // percentile as a fraction (percentile only)
    private final StreamingMoments moments;
    private final StreamingQuantiles quantiles;
    private final double[] block = new double[BLOCK];
    private int fill;
    private long seen; // values received, finite or not
    private long kept;
    private long omitted;

    /**
     * @param kernels        the one-shot kernels (used for exact quantiles)
     * @param minPoints      fewest finite points the statistic needs
     * @param exactMaxPoints quantiles stay exact up to this many points
     * @param sketchK        KLL parameter k beyond it
     */
    public StreamAccumulator(String algorithm, Map<String, String> params, Map<String, NativeKernel> kernels,
                             int minPoints, long exactMaxPoints, int sketchK) throws AnalysisException {
        this(algorithm, params, kernels, minPoints, exactMaxPoints, sketchK, StreamingQuantiles.Budget.unlimited());
    }

    /**
     * @param budget bytes for exact quantile buffers shared by all streams of the engine
     */
    public StreamAccumulator(String algorithm, Map<String, String> params, Map<String, NativeKernel> kernels,
                             int minPoints, long exactMaxPoints, int sketchK, StreamingQuantiles.Budget budget)
            throws AnalysisException {
        if (!STREAMABLE.contains(algorithm)) {
            throw new IllegalArgumentException(algorithm + " is not streamable");
        }
        this.algorithm = algorithm;
        this.params = Map.copyOf(params);
        this.kernels = kernels;
        this.minPoints = minPoints;
        String nanPolicy = params.getOrDefault("nan_policy", "raise");
        if (!nanPolicy.equals("raise") && !nanPolicy.equals("omit")) {
            throw AnalysisException.invalid("param 'nan_policy' must be 'raise' or 'omit', got '" + nanPolicy + "'");
        }
        this.omitNonFinite = nanPolicy.equals("omit");
        this.q = algorithm.equals("percentile") ? percentileParam(params) / 100.0 : Double.NaN;
        this.moments = NO_MOMENTS.contains(algorithm) ? null
                : new StreamingMoments(algorithm.equals("correlation") || algorithm.equals("summary"));
        this.quantiles = QUANTILES.contains(algorithm) ? new StreamingQuantiles(exactMaxPoints, sketchK, budget)
                : null;
    }

    /** Number of values received so far (including omitted NaN/Inf). */
    public long seen() {
        return seen;
    }

    /** Adds one value; a non-finite one is rejected or dropped per nan_policy. */
    public void add(double v) throws AnalysisException {
        long index = seen++;
        if (!Double.isFinite(v)) {
            if (!omitNonFinite) {
                throw AnalysisException.invalid("data[" + index + "] is " + v + "; NaN and infinite values are "
                        + "rejected (send param nan_policy=omit to drop them)");
            }
            omitted++;
            return;
        }
        block[fill++] = v;
        if (fill == BLOCK) {
            flush();
        }
    }

    private void flush() {
        if (fill == 0) {
            return;
        }
        if (moments != null) {
            moments.add(block, 0, fill);
        }
        if (quantiles != null) {
            quantiles.add(block, 0, fill);
        }
        kept += fill;
        fill = 0;
    }

    /** Releases the memory reserved for exact quantiles (idempotent); call when a stream ends in any way. */
    public void close() {
        if (quantiles != null) {
            quantiles.release();
        }
    }

    /** The statistic over everything received; releases the reserved memory. */
    public Result finish() throws AnalysisException {
        try {
            return compute();
        } finally {
            close();
        }
    }

    private Result compute() throws AnalysisException {
        flush();
        if (kept < minPoints) {
            String what = kept == 0 ? "no data" : "only " + kept + " data point" + (kept == 1 ? "" : "s")
                    + (omitted > 0 ? " after omitting " + omitted + " NaN/Inf" : "");
            throw AnalysisException.invalid(algorithm + " needs at least " + minPoints + " data point"
                    + (minPoints == 1 ? "" : "s") + ", got " + what);
        }
        Map<String, String> stats = new LinkedHashMap<>();
        stats.put("data_points", Long.toString(kept));
        if (omitted > 0) {
            stats.put("omitted_non_finite", Long.toString(omitted));
        }
        Object value = switch (algorithm) {
            case "count" -> (Object) kept;
            case "mean" -> finite(moments.mean());
            case "variance" -> finite(moments.variance());
            case "std" -> finite(Math.sqrt(moments.variance()));
            case "min" -> moments.min();
            case "max" -> moments.max();
            case "range" -> finite(moments.max() - moments.min());
            // constant data: 0.0, as the one-shot kernels (the earlier engine's answer)
            case "skewness" -> finite(zeroIfNaN(moments.skewness()));
            case "kurtosis" -> finite(zeroIfNaN(moments.kurtosis()));
            case "correlation" -> finite(moments.lag1());
            case "summary" -> summary(stats);
            default -> quantileStatistic(stats);
        };
        return new Result(value, stats);
    }

    private Object quantileStatistic(Map<String, String> stats) throws AnalysisException {
        if (quantiles.exact()) {
            stats.put("quantile_method", "exact");
            return kernels.get(algorithm).compute(quantiles.exactValues(), params);
        }
        sketchStats(stats);
        double v = switch (algorithm) {
            case "median" -> quantiles.quantile(0.5);
            case "q1" -> quantiles.quantile(0.25);
            case "q3" -> quantiles.quantile(0.75);
            case "iqr" -> quantiles.quantile(0.75) - quantiles.quantile(0.25);
            case "percentile" -> quantiles.quantile(q);
            default -> throw new IllegalStateException(algorithm);
        };
        return finite(v);
    }

    private void sketchStats(Map<String, String> stats) {
        stats.put("quantile_method", "kll");
        if (quantiles.budgetExhausted()) {
            stats.put("kll_reason", "the engine-wide memory for exact quantiles (stream_exact_total_mb) was in "
                    + "use by other streams");
        }
        stats.put("rank_error", Double.toString(quantiles.rankError()));
        stats.put("sketch_k", Integer.toString(quantiles.k()));
        stats.put("sketch_retained", Integer.toString(quantiles.retained()));
    }

    private Object summary(Map<String, String> stats) throws AnalysisException {
        long n = moments.count();
        double median;
        double q25;
        double q75;
        if (quantiles.exact()) {
            Map<?, ?> full = (Map<?, ?>) kernels.get("summary").compute(quantiles.exactValues(), params);
            median = (Double) full.get("median");
            q25 = (Double) full.get("q25");
            q75 = (Double) full.get("q75");
            stats.put("quantile_method", "exact");
        } else {
            median = quantiles.quantile(0.5);
            q25 = quantiles.quantile(0.25);
            q75 = quantiles.quantile(0.75);
            sketchStats(stats);
        }
        double variance = moments.variance();
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("count", n);
        r.put("mean", finite(moments.mean()));
        r.put("median", median);
        r.put("std", finite(Math.sqrt(variance)));
        r.put("variance", finite(variance));
        r.put("min", moments.min());
        r.put("max", moments.max());
        r.put("range", finite(moments.max() - moments.min()));
        r.put("q25", q25);
        r.put("q75", q75);
        r.put("autocorr", finiteOrNull(moments.lag1()));
        r.put("skewness", n < 3 ? null : finiteOrNull(zeroIfNaN(moments.skewness())));
        r.put("kurtosis", n < 4 ? null : finiteOrNull(zeroIfNaN(moments.kurtosis())));
        if (quantiles.exact()) {
            r.put("quantile_method", "exact");
        } else {
            r.put("quantile_method", "kll");
            r.put("rank_error", quantiles.rankError());
        }
        return r;
    }

    private double finite(double v) throws AnalysisException {
        if (!Double.isFinite(v)) {
            throw AnalysisException.invalid(algorithm + " overflows double precision for these data "
                    + "(values too large in magnitude)");
        }
        return v;
    }

    /** NaN means (numerically) constant data here (too few points were refused earlier). */
    private static double zeroIfNaN(double v) {
        return Double.isNaN(v) ? 0.0 : v;
    }

    private static Double finiteOrNull(double v) {
        return Double.isFinite(v) ? v : null;
    }

    /** The {@code percentile} param: a number in [0, 100]; absent means 50. */
    static double percentileParam(Map<String, String> params) throws AnalysisException {
        String raw = params.get("percentile");
        if (raw == null || raw.isBlank()) {
            return 50.0;
        }
        try {
            double v = Double.parseDouble(raw.trim());
            if (v >= 0.0 && v <= 100.0) {
                return v;
            }
        } catch (NumberFormatException e) {
            // fall through
        }
        throw AnalysisException.invalid("param 'percentile' must be a number between 0 and 100, got '" + raw + "'");
    }
}
