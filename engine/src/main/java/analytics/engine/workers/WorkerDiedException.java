package analytics.engine.workers;

/**
 * The worker serving a request went away (crash, kill, lost connection, protocol error). Retryable once on another
 * worker, unless the engine itself stopped the worker because of what the request did (memory limit).
 */
final class WorkerDiedException extends RuntimeException {
    private final boolean retryable;

    WorkerDiedException(String message) {
        this(message, true);
    }

    WorkerDiedException(String message, boolean retryable) {
        super(message, null, false, false);
        this.retryable = retryable;
    }

    boolean retryable() {
        return retryable;
    }
}
