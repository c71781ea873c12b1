package analytics.engine.dispatch;

import analytics.engine.api.Cancellation;
import analytics.engine.api.AnalysisException;
import analytics.engine.metrics.EngineMetrics;
import analytics.engine.proto.AnalysisOptions;
import analytics.engine.proto.AnalysisRequest;
import analytics.engine.proto.AnalysisResponse;
import analytics.engine.proto.ErrorCode;
import analytics.engine.proto.ExecutionMetadata;
import analytics.engine.stats.NativeKernel;
import analytics.engine.api.PythonBackend;
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
 * the request ({@link RequestValidator}), chooses native or Python, runs it and wraps the result. It never
 * throws: every failure becomes {@code success=false} with an {@link ErrorCode} and a message naming the
 * field at fault.
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
        return analyze(req, data, target, -1, deadlineRemainingMs, cancel, listener);
    }

    /**
     * As above, for a request the server's marshaller decoded in {@code decodeNanos}: reported as
     * {@code stats.decode_us} beside {@code execution_time_us}, so that the two add up to the engine's time
     * from the whole request received to the answer (bench/README.md, "Large requests"). Negative: not known.
     */
    public CompletableFuture<AnalysisResponse> analyze(AnalysisRequest req, double[] data, double[] target,
                                                       long decodeNanos, long deadlineRemainingMs,
                                                       Cancellation cancel, PythonBackend.Listener listener) {
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
            RequestValidator.Validated v = RequestValidator.validate(req, data, target, requestId, spec,
                    limits.maxDataPoints());
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
            if (decodeNanos >= 0) {
                m.putStats("decode_us", Long.toString(decodeNanos / 1000));
            }
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

    private static double[] values(int n, java.util.function.IntToDoubleFunction get) {
        double[] a = new double[n];
        for (int i = 0; i < n; i++) {
            a[i] = get.applyAsDouble(i);
        }
        return a;
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

    private Outcome runNative(AlgorithmSpec spec, RequestValidator.Validated v) throws AnalysisException {
        long t0 = System.nanoTime();
        Object result = kernels.get(spec.name()).compute(v.input().data(), v.input().params());
        long computeUs = (System.nanoTime() - t0) / 1000;
        Map<String, String> stats = v.omitted() > 0
                ? Map.of("compute_us", Long.toString(computeUs), "omitted_non_finite", Integer.toString(v.omitted()))
                : Map.of("compute_us", Long.toString(computeUs));
        return new Outcome(ResultJson.write(result), "native", stats);
    }

    private CompletableFuture<Outcome> runPython(RequestValidator.Validated v, long timeoutMs, Cancellation cancel,
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
