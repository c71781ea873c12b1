package analytics.engine.workers;

/** The worker serving a request went away (crash, kill, lost connection, protocol error): retryable once. */
final class WorkerDiedException extends RuntimeException {
    WorkerDiedException(String message) {
        super(message, null, false, false);
    }
}
