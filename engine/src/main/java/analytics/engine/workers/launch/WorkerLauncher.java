package analytics.engine.workers.launch;

import java.io.IOException;

/**
 * How a worker process comes into being. The supervisor decides <em>when</em> a worker starts (first start,
 * restart with backoff, recycle, reload); a launcher only knows <em>how</em>: a fresh interpreter per worker
 * ({@code SpawnLauncher}) or a fork of a warm template process ({@code ForkServerLauncher}). Either way the
 * started worker connects to the engine's worker socket and says hello with {@link LaunchSpec#token()}, so
 * everything after the launch (handshake, requests, pings, shutdown) is the same for both.
 */
public interface WorkerLauncher extends AutoCloseable {

    /** Starts one worker. Call on a long-lived supervisor thread (spawned workers' parent-death signal). */
    LaunchedProcess launch(LaunchSpec spec) throws IOException;

    /** One line for logs and {@code /health}: e.g. "fork-server (template pid 1234)" or "spawn". */
    String describe();

    /** For /health: at least {"mode": ...}; a fork server adds its template and any fallback to spawning. */
    default java.util.Map<String, Object> status() {
        return java.util.Map.of("mode", describe());
    }

    /**
     * First step of a rolling reload, before the workers are replaced one by one: a fork server starts a template
     * with the code now on disk (the replacements are forked from it). Nothing to do for a spawning launcher.
     */
    default void reload() {
    }

    /** Stops what the launcher itself runs (a template process); launched workers are the supervisor's. */
    @Override
    void close();
}
