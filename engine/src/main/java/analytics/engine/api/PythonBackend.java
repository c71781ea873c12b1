package analytics.engine.api;

import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;

/**
 * What the dispatcher needs from the Python side: run one request on some worker.
 *
 * <p>The future completes with the worker's result, or exceptionally with an
 * {@link analytics.engine.api.AnalysisException} whose code is one of TIMEOUT, OVERLOADED,
 * WORKER_FAILED, UNAVAILABLE, INVALID_ARGUMENT, UNKNOWN_ALGORITHM, INTERNAL. It always completes, at the
 * latest at {@code timeoutMs} (plus scheduling slack).
 */
public interface PythonBackend extends AutoCloseable {

    CompletableFuture<PythonResult> submit(AnalysisInput input, long timeoutMs);

    /** True when a request submitted now could be served (a worker is ready or starting, breaker not open). */
    boolean isAvailable();

    /** Algorithms announced by the workers' handshakes (empty until the first worker is ready). */
    Set<String> algorithms();

    /** Pool state for /health, HealthCheck capabilities: JSON-compatible values. */
    Map<String, Object> status();

    /**
     * The engine is stopping (first SIGTERM, before the drain): requests in flight finish, no worker is started
     * any more. {@link #close()} follows after the drain.
     */
    default void markStopping() {
    }

    /** Rolling restart of every worker, one at a time (SIGHUP). */
    void reload();

    @Override
    void close();

    /** The result of one Python computation. */
    record PythonResult(String resultJson, int workerId, long computeMicros, long roundTripMicros) {
    }
}
