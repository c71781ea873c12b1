package analytics.engine.dispatch;

import analytics.engine.api.Cancellation;
import analytics.engine.api.AnalysisInput;
import analytics.engine.api.AnalysisException;
import analytics.engine.dispatch.AlgorithmSpec.ParamSpec;
import analytics.engine.metrics.EngineMetrics;
import analytics.engine.proto.AnalysisOptions;
import analytics.engine.proto.AnalysisRequest;
import analytics.engine.proto.AnalysisResponse;
import analytics.engine.proto.ErrorCode;
import analytics.engine.proto.ExecutionMetadata;
import analytics.engine.stats.NativeKernel;
import analytics.engine.api.PythonBackend;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.slf4j.MDC;

/**
 * Turns one {@link AnalysisRequest} into one {@link AnalysisResponse}: looks the algorithm up, validates
 * the request, chooses native or Python, runs it and wraps the result. It never throws: every failure
 * becomes {@code success=false} with an {@link ErrorCode} and a message naming the field at fault.
 */
public final class Dispatcher {

    private static final Logger LOG = LoggerFactory.getLogger(Dispatcher.class);

    /** Limits a request must respect. */
    public record Limits(int maxDataPoints, int defaultTimeoutMs) {
    }

    private final AlgorithmRegistry registry;
    private final Map<String, NativeKernel> kernels;
    private final PythonBackend python; // null when the engine runs without Python workers
    private final EngineMetrics metrics;
    private final Limits limits;

    public Dispatcher(AlgorithmRegistry registry, Map<String, NativeKernel> kernels, PythonBackend python,
                      EngineMetrics metrics, Limits limits) {
        this.registry = registry;
        this.kernels = kernels;
        this.python = python;
        this.metrics = metrics;
        this.limits = limits;
        for (AlgorithmSpec s : registry.all()) {
            if (s.nativeImpl() && !kernels.containsKey(s.name())) {
                throw new IllegalStateException("registry lists native " + s.name() + " but no kernel exists");
            }
        }
    }

    public AlgorithmRegistry registry() {
        return registry;
    }

    public PythonBackend python() {
        return python;
    }

    /**
     * Runs one request.
     *
     * @param deadlineRemainingMs time left on the caller's gRPC deadline, or -1 when it has none
     */
    public CompletableFuture<AnalysisResponse> analyze(AnalysisRequest req, long deadlineRemainingMs) {
        return analyze(req, deadlineRemainingMs, new Cancellation(), PythonBackend.Listener.NONE);
    }

    /**
     * Runs one request that its caller may cancel ({@code cancel}: the gRPC call was cancelled, its connection
     * closed or its deadline passed) and whose Python execution {@code listener} may watch. A cancelled request
     * is answered {@code CANCELLED} (a deadline: {@code TIMEOUT}); native statistics are too short to stop.
     */
    public CompletableFuture<AnalysisResponse> analyze(AnalysisRequest req, long deadlineRemainingMs,
                                                       Cancellation cancel, PythonBackend.Listener listener) {
        return analyze(req, values(req.getDataCount(), req::getData),
                values(req.getTargetCount(), req::getTarget), deadlineRemainingMs, cancel, listener);
    }

    /**
     * Runs one request whose {@code data} and {@code target} were already decoded into arrays (the
     * server's PackedDoublesMarshaller does that in bulk); {@code req}'s own data/target fields are not
     * read. The arrays become the request's: they are computed on without another copy.
     *
     * @param target the target values; empty = no target
     */
    public CompletableFuture<AnalysisResponse> analyze(AnalysisRequest req, double[] data, double[] target,
                                                       long deadlineRemainingMs) {
        return analyze(req, data, target, deadlineRemainingMs, new Cancellation(), PythonBackend.Listener.NONE);
    }

    /** The pre-decoded form, cancellable and watched (see the two methods above). */
    public CompletableFuture<AnalysisResponse> analyze(AnalysisRequest req, double[] data, double[] target,
                                                       long deadlineRemainingMs, Cancellation cancel,
                                                       PythonBackend.Listener listener) {
        long start = System.nanoTime();
        String requestId = req.getRequestId().isEmpty() ? UUID.randomUUID().toString() : req.getRequestId();
        String algorithm = req.getAlgorithm().trim();
        AlgorithmSpec spec = registry.get(algorithm);
        EngineMetrics.InFlight inFlight = metrics.started();
        CompletableFuture<Outcome> outcome;
        String chosen = "none"; // stays "none" when the request is refused before anything runs
        try {
            if (spec == null) {
                throw new AnalysisException(ErrorCode.UNKNOWN_ALGORITHM, unknownMessage(algorithm));
            }
            Validated v = validate(req, data, target, requestId, spec);
            chosen = chooseImplementation(spec, req);
            long timeoutMs = effectiveTimeout(req, deadlineRemainingMs);
            outcome = chosen.equals("native")
                    ? CompletableFuture.completedFuture(runNative(spec, v))
                    : runPython(v, timeoutMs, cancel, listener);
        } catch (AnalysisException e) {
            outcome = CompletableFuture.failedFuture(e);
        } catch (RuntimeException e) {
            LOG.error("request {}: internal error before execution", printable(requestId), e);
            outcome = CompletableFuture.failedFuture(
                    new AnalysisException(ErrorCode.INTERNAL, "internal error: " + e.getClass().getSimpleName()));
        }
        String implementation = chosen;
        return outcome.handle((out, err) -> {
            long micros = (System.nanoTime() - start) / 1000;
            AnalysisResponse.Builder b = AnalysisResponse.newBuilder().setRequestId(requestId);
            String impl = out != null ? out.implementation : implementation;
            String metricAlgorithm = spec == null ? "unknown" : spec.name();
            if (err == null) {
                b.setSuccess(true).setResultJson(out.resultJson);
            } else {
                AnalysisException ae = unwrap(err, requestId);
                b.setSuccess(false).setErrorCode(ae.code()).setErrorMessage(ae.getMessage());
                logFailure(requestId, algorithm, ae);
            }
            // Metadata on every answer, whatever options.include_metadata says: the earlier engine
            // sent it always, and v7 clients that set options without include_metadata (proto
            // default false) read it. data_points is the earlier engine's stats key.
            ExecutionMetadata.Builder m = ExecutionMetadata.newBuilder()
                    .setImplementation(impl)
                    .setExecutionTimeMs(micros / 1000)
                    .setAlgorithm(algorithm)
                    .setDataSize(data.length)
                    .putStats("execution_time_us", Long.toString(micros))
                    .putStats("data_points", Integer.toString(data.length));
            if (out != null) {
                m.putAllStats(out.stats);
            }
            b.setMetadata(m);
            AnalysisResponse resp = b.build();
            inFlight.finished(metricAlgorithm, impl, resp.getSuccess() ? "success" : resp.getErrorCode().name(),
                    System.nanoTime() - start);
            if (LOG.isDebugEnabled()) {
                MDC.put("request_id", printable(requestId));
                LOG.debug("{} via {}: {} in {} us", printable(algorithm), impl, resp.getSuccess() ? "ok" : resp.getErrorCode(),
                        micros);
                MDC.remove("request_id");
            }
            return resp;
        });
    }

    private static void logFailure(String requestId, String algorithm, AnalysisException e) {
        MDC.put("request_id", printable(requestId));
        try {
            switch (e.code()) {
                case CANCELLED -> LOG.info("{} cancelled: {}", printable(algorithm), printable(e.getMessage(), 500));
                case INVALID_ARGUMENT, UNKNOWN_ALGORITHM -> LOG.info("{} rejected: {}", printable(algorithm), printable(e.getMessage(), 500));
                case INTERNAL -> LOG.error("{} failed: {}", printable(algorithm), printable(e.getMessage(), 500));
                default -> LOG.warn("{} failed ({}): {}", printable(algorithm), e.code(), printable(e.getMessage(), 500));
            }
        } finally {
            MDC.remove("request_id");
        }
    }

    private static AnalysisException unwrap(Throwable err, String requestId) {
        Throwable t = err;
        while ((t instanceof CompletionException || t instanceof ExecutionException) && t.getCause() != null) {
            t = t.getCause();
        }
        if (t instanceof AnalysisException ae) {
            return ae;
        }
        LOG.error("request {}: internal error", printable(requestId), t);
        return new AnalysisException(ErrorCode.INTERNAL, "internal error: " + t.getClass().getSimpleName()
                + " (details in the engine log, request_id " + requestId + ")");
    }

    /**
     * Client-supplied text as it may appear in a log line or an error message: at most 64 characters,
     * control and bidi/format characters escaped as \\uXXXX (no log forging, no megabyte echoes).
     */
    public static String printable(String s) {
        return printable(s, 64);
    }

    static String printable(String s, int max) {
        if (s == null) {
            return "";
        }
        StringBuilder b = new StringBuilder(Math.min(s.length(), 80));
        for (int i = 0; i < s.length() && i < max; i++) {
            char c = s.charAt(i);
            int type = Character.getType(c);
            if (Character.isISOControl(c) || type == Character.FORMAT || type == Character.LINE_SEPARATOR
                    || type == Character.PARAGRAPH_SEPARATOR) {
                b.append(String.format("\\u%04x", (int) c));
            } else {
                b.append(c);
            }
        }
        if (s.length() > max) {
            b.append("...(").append(s.length()).append(" chars)");
        }
        return b.toString();
    }

    public String unknownMessage(String algorithm) {
        return "unknown algorithm '" + printable(algorithm) + "'; supported: " + String.join(", ", registry.names());
    }

    // ---------------------------------------------------------------- validation

    /** The request after validation, with NaN/Inf handled. */
    private record Validated(AnalysisInput input, int omitted) {
    }

    private static double[] values(int n, java.util.function.IntToDoubleFunction get) {
        double[] a = new double[n];
        for (int i = 0; i < n; i++) {
            a[i] = get.applyAsDouble(i);
        }
        return a;
    }

    private Validated validate(AnalysisRequest req, double[] data, double[] target, String requestId,
                               AlgorithmSpec spec) throws AnalysisException {
        int n = data.length;
        if (n > limits.maxDataPoints()) {
            throw AnalysisException.invalid("data has " + n + " values; the limit is " + limits.maxDataPoints()
                    + " per request (setting max_data_points; use AnalyzeStream for larger series)");
        }
        Map<String, String> params = req.getParamsMap();
        for (String key : params.keySet()) {
            if (spec.params().stream().noneMatch(p -> p.name().equals(key)) && !key.startsWith("_")) {
                // Unknown params are tolerated (old clients send extras) but never interpreted.
                LOG.debug("request {}: ignoring unknown param '{}' for {}", requestId, key, spec.name());
            }
        }
        // before the declared params, so every algorithm words a bad nan_policy the same way
        String nanPolicy = params.getOrDefault("nan_policy", "raise");
        if (!nanPolicy.equals("raise") && !nanPolicy.equals("omit")) {
            throw AnalysisException.invalid("param 'nan_policy' must be 'raise' or 'omit', got '" + printable(nanPolicy, 40) + "'");
        }
        for (ParamSpec p : spec.params()) {
            String value = params.get(p.name());
            if (value == null) {
                if (p.required()) {
                    throw AnalysisException.invalid("missing required param '" + p.name() + "' for "
                            + spec.name() + " (" + p.help() + ")");
                }
                continue;
            }
            checkParam(spec, p, value);
        }
        // Shape.
        int rows;
        int cols;
        boolean matrix = req.getShapeCount() > 0;
        if (req.getShapeCount() == 0) {
            rows = n;
            cols = 1;
        } else if (req.getShapeCount() == 1) {
            if (req.getShape(0) != n) {
                throw AnalysisException.invalid("shape [" + req.getShape(0) + "] does not match data with "
                        + n + " values");
            }
            rows = n;
            cols = 1;
        } else if (req.getShapeCount() == 2) {
            long r = req.getShape(0);
            long c = req.getShape(1);
            if (r < 0 || c <= 0) {
                throw AnalysisException.invalid("shape [" + r + ", " + c + "] must have rows >= 0 and columns >= 1");
            }
            if (r * c != n) {
                throw AnalysisException.invalid("shape [" + r + ", " + c + "] needs " + (r * c)
                        + " values but data has " + n);
            }
            rows = (int) r;
            cols = (int) c;
        } else {
            throw AnalysisException.invalid("shape must have 1 or 2 dimensions, got " + req.getShapeCount());
        }
        if (cols > 1 && spec.input().equals("series")) {
            throw AnalysisException.invalid(spec.name() + " takes a 1-D series, but shape is [" + rows + ", "
                    + cols + "]");
        }
        if (target.length > 0 && target.length != rows) {
            throw AnalysisException.invalid("target has " + target.length + " values but data has "
                    + rows + " rows");
        }
        if (target.length == 0) {
            target = null;
        }
        int omitted = 0;
        int bad = firstNonFinite(data);
        int badTarget = target == null ? -1 : firstNonFinite(target);
        if (bad >= 0 || badTarget >= 0) {
            if (nanPolicy.equals("raise")) {
                String where = bad >= 0 ? "data[" + bad + "] is " + data[bad]
                        : "target[" + badTarget + "] is " + target[badTarget];
                throw AnalysisException.invalid(where + "; NaN and infinite values are rejected "
                        + "(send param nan_policy=omit to drop them)");
            }
            int keptRows = 0;
            double[] cleanData = new double[n];
            double[] cleanTarget = target == null ? null : new double[rows];
            for (int r = 0; r < rows; r++) {
                boolean ok = target == null || Double.isFinite(target[r]);
                for (int c = 0; c < cols && ok; c++) {
                    ok = Double.isFinite(data[r * cols + c]);
                }
                if (ok) {
                    System.arraycopy(data, r * cols, cleanData, keptRows * cols, cols);
                    if (cleanTarget != null) {
                        cleanTarget[keptRows] = target[r];
                    }
                    keptRows++;
                }
            }
            omitted = rows - keptRows;
            rows = keptRows;
            data = java.util.Arrays.copyOf(cleanData, keptRows * cols);
            target = cleanTarget == null ? null : java.util.Arrays.copyOf(cleanTarget, keptRows);
        }
        if (spec.minPoints() > 0 && rows < spec.minPoints()) {
            String what = rows == 0 ? "no data" : "only " + rows + " data point" + (rows == 1 ? "" : "s")
                    + (omitted > 0 ? " after omitting " + omitted + " NaN/Inf" : "");
            throw AnalysisException.invalid(spec.name() + " needs at least " + spec.minPoints()
                    + " data point" + (spec.minPoints() == 1 ? "" : "s") + ", got " + what);
        }
        if (spec.input().equals("text") && req.getTextsCount() == 0 && !params.containsKey("text")
                && !(params.containsKey("text1") && params.containsKey("text2"))) {
            throw AnalysisException.invalid(spec.name() + " needs texts (field 'texts') or param 'text'"
                    + (spec.name().equals("text_similarity") ? " / params 'text1' and 'text2'" : ""));
        }
        AnalysisInput input = new AnalysisInput(requestId, spec.name(), data, rows, cols, matrix, target,
                List.copyOf(req.getTextsList()), params);
        return new Validated(input, omitted);
    }

    private static int firstNonFinite(double[] a) {
        for (int i = 0; i < a.length; i++) {
            if (!Double.isFinite(a[i])) {
                return i;
            }
        }
        return -1;
    }

    // The grammar of a number the Python side accepts (core.Params): decimal, no nan/inf/hex/underscores.
    private static final java.util.regex.Pattern DECIMAL =
            java.util.regex.Pattern.compile("[+-]?(\\d+(\\.\\d*)?|\\.\\d+)([eE][+-]?\\d+)?");
    private static final java.util.regex.Pattern INTEGER = java.util.regex.Pattern.compile("[+-]?\\d+");
    private static final List<String> BOOLS = List.of("true", "false", "1", "0", "yes", "no", "on", "off");

    /**
     * Checks one param value against its declaration: the same grammar, bounds and choices as the worker's
     * {@code core.Params} (the declaration itself comes from the worker package's catalogue).
     */
    private static void checkParam(AlgorithmSpec spec, ParamSpec p, String value) throws AnalysisException {
        String v = value.trim();
        if (v.isEmpty() && !p.required()) {
            return;
        }
        String lower = v.toLowerCase(java.util.Locale.ROOT);
        if (p.words().contains(lower)) {
            return;
        }
        String problem = switch (p.type()) {
            case INT -> {
                Double n = null;
                if (v.length() <= 40 && (INTEGER.matcher(v).matches()
                        || (DECIMAL.matcher(v).matches() && isIntegral(Double.parseDouble(v))))) {
                    n = Double.parseDouble(v); // "5.0" and "1e3" are integers; "5.5" is not
                }
                yield n != null && inRange(p, n) ? null : "an integer" + rangeText(p);
            }
            case NUMBER -> {
                boolean ok = DECIMAL.matcher(v).matches() && Double.isFinite(Double.parseDouble(v))
                        && inRange(p, Double.parseDouble(v));
                yield ok ? null : (p.min() == null && p.max() == null ? "a finite number" : "a number" + rangeText(p));
            }
            case BOOL -> BOOLS.contains(lower) ? null : "true or false";
            case INT_LIST -> {
                boolean ok = true;
                for (String part : v.replace("(", "").replace(")", "").split(",", -1)) {
                    ok &= INTEGER.matcher(part.trim()).matches() && part.trim().length() <= 18;
                }
                yield ok ? null : "a comma-separated list of integers like \"1,1,1\"";
            }
            case CHOICE -> p.choices().contains(lower) ? null : "one of " + String.join(", ", p.choices());
            case STRING -> null;
        };
        if (problem != null && !p.words().isEmpty()) {
            problem += " or " + String.join(", ", p.words());
        }
        if (problem != null) {
            String shown = printable(v, 40);
            throw AnalysisException.invalid("param '" + p.name() + "' of " + spec.name() + " must be " + problem
                    + ", got '" + shown + "'");
        }
    }

    private static boolean isIntegral(double d) {
        return Double.isFinite(d) && d == Math.rint(d);
    }

    private static boolean inRange(ParamSpec p, double x) {
        if (p.min() != null && (x < p.min() || (p.minExclusive() && x == p.min()))) {
            return false;
        }
        return p.max() == null || x <= p.max();
    }

    /** As the worker words it (core._range_text). */
    private static String rangeText(ParamSpec p) {
        Double lo = p.min();
        Double hi = p.max();
        if (lo != null && hi != null) {
            return p.minExclusive() ? " > " + num(lo) + " and <= " + num(hi) : " between " + num(lo) + " and " + num(hi);
        }
        if (lo != null) {
            return (p.minExclusive() ? " > " : " >= ") + num(lo);
        }
        return hi != null ? " <= " + num(hi) : "";
    }

    private static String num(double x) {
        return x == Math.rint(x) && Math.abs(x) < 1e15 ? Long.toString((long) x) : Double.toString(x);
    }

    // ---------------------------------------------------------------- implementation choice

    /** Native requests up to this many values are computed on the network thread (see {@link #isCheap}). */
    public static final int INLINE_MAX_POINTS = 100_000;
    /**
     * Python requests up to this many values (data + target) and texts are handed to the pool from the network
     * thread (see {@link #isCheap}): validating and framing them costs a few microseconds (at most ~80 KB of
     * msgpack), less than the hop to another thread and its wake-up.
     */
    public static final int INLINE_PYTHON_MAX_POINTS = 10_000;
    public static final int INLINE_PYTHON_MAX_TEXTS = 100;

    /**
     * True when answering this request costs about as much as handing it to another thread, and never blocks:
     * refusals (unknown algorithm), native statistics over at most {@link #INLINE_MAX_POINTS} values (tens of
     * microseconds), and small Python requests ({@link #INLINE_PYTHON_MAX_POINTS}): the pool's submit only
     * validates, frames and writes the request when a worker is idle, and otherwise hands the wait for one to
     * its own borrower thread, so it returns at once; the answer arrives on another thread. The gRPC service
     * runs those on the network thread; everything else (big series) goes to a worker thread first.
     */
    public boolean isCheap(AnalysisRequest req) {
        return isCheap(req, req.getDataCount());
    }

    /** {@link #isCheap(AnalysisRequest)} for a request whose data (dataCount values) was decoded apart. */
    public boolean isCheap(AnalysisRequest req, int dataCount) {
        AlgorithmSpec spec = registry.get(req.getAlgorithm().trim());
        if (spec == null) {
            return true;
        }
        String chosen;
        try {
            chosen = chooseImplementation(spec, req);
        } catch (AnalysisException e) {
            return true;
        }
        if (chosen.equals("native")) {
            return dataCount <= INLINE_MAX_POINTS;
        }
        return (long) dataCount + req.getTargetCount() <= INLINE_PYTHON_MAX_POINTS
                && req.getTextsCount() <= INLINE_PYTHON_MAX_TEXTS;
    }

    /**
     * v7 semantics: no options = prefer native, allow Python. {@code prefer_rust} means "prefer native";
     * {@code allow_python=false} forbids the Python path.
     */
    String chooseImplementation(AlgorithmSpec spec, AnalysisRequest req) throws AnalysisException {
        AnalysisOptions o = req.hasOptions() ? req.getOptions() : null;
        boolean preferNative = o == null || o.getPreferRust();
        boolean allowPython = o == null || o.getAllowPython();
        boolean pythonUp = python != null && python.isAvailable();
        if (spec.nativeImpl()) {
            if (preferNative || !allowPython || !pythonUp) {
                return "native";
            }
            return "python";
        }
        if (!allowPython) {
            throw new AnalysisException(ErrorCode.UNAVAILABLE, "algorithm '" + spec.name()
                    + "' is implemented only in Python, and options.allow_python is false");
        }
        if (python == null) {
            throw new AnalysisException(ErrorCode.UNAVAILABLE, "algorithm '" + spec.name()
                    + "' needs the Python workers, and this engine runs with workers = 0");
        }
        return "python";
    }

    private long effectiveTimeout(AnalysisRequest req, long deadlineRemainingMs) {
        long t = req.hasOptions() && req.getOptions().getTimeoutMs() > 0 ? req.getOptions().getTimeoutMs()
                : limits.defaultTimeoutMs();
        if (deadlineRemainingMs >= 0) {
            t = Math.min(t, deadlineRemainingMs);
        }
        return Math.max(t, 1);
    }

    // ---------------------------------------------------------------- execution

    /** A successful execution. */
    private record Outcome(String resultJson, String implementation, Map<String, String> stats) {
    }

    private Outcome runNative(AlgorithmSpec spec, Validated v) throws AnalysisException {
        long t0 = System.nanoTime();
        Object result = kernels.get(spec.name()).compute(v.input().data(), v.input().params());
        long computeUs = (System.nanoTime() - t0) / 1000;
        Map<String, String> stats = v.omitted() > 0
                ? Map.of("compute_us", Long.toString(computeUs), "omitted_non_finite", Integer.toString(v.omitted()))
                : Map.of("compute_us", Long.toString(computeUs));
        return new Outcome(ResultJson.write(result), "native", stats);
    }

    private CompletableFuture<Outcome> runPython(Validated v, long timeoutMs, Cancellation cancel,
                                                 PythonBackend.Listener listener) {
        if (!python.isAvailable()) {
            return CompletableFuture.failedFuture(new AnalysisException(ErrorCode.UNAVAILABLE,
                    "no Python worker is available (workers by state: " + python.status().get("workers")
                            + ", circuit breaker " + python.status().get("breaker") + "); retry shortly"));
        }
        return python.submit(v.input(), timeoutMs, cancel, listener).thenApply(r -> {
            Map<String, String> stats = new java.util.LinkedHashMap<>();
            stats.put("worker_id", Integer.toString(r.workerId()));
            stats.put("worker_compute_us", Long.toString(r.computeMicros()));
            stats.put("worker_roundtrip_us", Long.toString(r.roundTripMicros()));
            if (v.omitted() > 0) {
                stats.put("omitted_non_finite", Integer.toString(v.omitted()));
            }
            return new Outcome(r.resultJson(), "python", stats);
        });
    }
}
