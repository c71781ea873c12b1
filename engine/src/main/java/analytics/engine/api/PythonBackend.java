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

    default CompletableFuture<PythonResult> submit(AnalysisInput input, long timeoutMs) {
        return submit(input, timeoutMs, new Cancellation(), Listener.NONE);
    }

    /**
     * Runs one request that the caller may cancel: a cancelled request leaves the queue, or is stopped on its
     * worker (a {@code cancel} frame; the worker is killed and replaced when it cannot stop), and its future
     * fails with {@code CANCELLED} at once. A {@link Cancellation.Kind#DEADLINE} cancellation is a
     * {@code TIMEOUT}, as when {@code timeoutMs} runs out. Nothing is retried after a cancellation. The
     * listener hears where the request is (queued, running, progress frames of the worker).
     */
    CompletableFuture<PythonResult> submit(AnalysisInput input, long timeoutMs, Cancellation cancel, Listener listener);

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

    /**
     * What happens to one request before its result, for AnalyzeWithProgress. Called on engine threads
     * (including the worker socket's event loop for {@link #progress}): implementations must not block.
     */
    interface Listener {
        Listener NONE = new Listener() {
        };

        /** Waiting for a free worker; {@code position} 1 = next. Called again when the position changes. */
        default void queued(int position) {
        }

        /** A worker took the request (again after a retry on another worker). */
        default void running(int workerId) {
        }

        /** The worker's progress frame: {@code fraction} 0..1, never decreasing within one attempt. */
        default void progress(double fraction, String detail) {
        }
    }

    /** The result of one Python computation. */
    record PythonResult(String resultJson, int workerId, long computeMicros, long roundTripMicros) {
    }
}
