package analytics.engine.workers.launch;

import java.util.concurrent.CompletableFuture;

/** A started worker process, whoever its parent is (the engine, or a fork-server template). */
public interface LaunchedProcess {

    long pid();

    /**
     * Completes once the process has ended, with a description for logs and crash reports:
     * "exited with status N" or "was killed by signal N".
     */
    CompletableFuture<String> exited();

    boolean isAlive();

    /** SIGTERM. */
    void terminate();

    /** SIGKILL. */
    void kill();
}
