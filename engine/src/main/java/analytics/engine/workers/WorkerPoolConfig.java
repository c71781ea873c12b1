package analytics.engine.workers;

import analytics.engine.config.EngineConfig;
import analytics.engine.workers.launch.WorkerStartMode;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.Objects;

/**
 * Everything the Python worker pool needs. All durations must be positive unless stated otherwise.
 *
 * @param python              the Python interpreter that has {@code analytics_worker} importable (required)
 * @param workers             number of worker processes (slots)
 * @param runtimeDir          directory for {@code workers.sock}; null → a fresh temp dir (0700) removed on close,
 *                            otherwise created (0700) if missing and left in place on close
 * @param workingDir          working directory of the worker processes; null → the JVM's
 * @param startupTimeout      a spawned worker must send its hello within this time
 * @param borrowWait          optional cap on how long a request waits for a free worker before {@code OVERLOADED};
 *                            zero = up to the request's own deadline (the default)
 * @param pingInterval        how often idle workers are pinged (hang detection, RSS for recycling)
 * @param pingTimeout         an idle worker that does not answer a ping within this is replaced
 * @param maxRequests         recycle a worker after this many requests (±10% jitter); 0 = never
 * @param maxRssBytes         recycle a worker whose resident set exceeds this; 0 = never
 * @param killGrace           SIGTERM → SIGKILL grace (also shutdown-message → SIGTERM)
 * @param restartBackoffInitial restart delay after the 2nd consecutive crash (the 1st is replaced at once); doubles per further crash
 * @param restartBackoffMax   cap of the restart delay
 * @param crashLoopLimit      after this many consecutive crashes a slot stays down until {@code reload()}
 * @param breakerFailureRate  circuit breaker failure rate threshold in percent
 * @param breakerWindow       circuit breaker sliding window (calls)
 * @param breakerMinCalls     calls needed before the breaker can open
 * @param breakerOpenDuration how long the breaker stays open before letting probe calls through
 * @param maxConcurrent       bulkhead: requests in the Python path at once (waiting + running)
 * @param rateLimitPerSecond  optional rate limit on the Python path; 0 = off
 * @param testMode            pass {@code --enable-test-algorithms} to the workers (test suites only)
 * @param maxFrameBytes       largest msgpack frame body in either direction
 * @param extraEnv            additional environment for the workers (e.g. PYTHONPATH)
 * @param startMode           how workers start: forked from a warm template (default), or spawned (optionally
 *                            with {@code --preload}); see docs/WORKERS.md
 */
public record WorkerPoolConfig(
        Path python,
        int workers,
        Path runtimeDir,
        Path workingDir,
        Duration startupTimeout,
        Duration borrowWait,
        Duration pingInterval,
        Duration pingTimeout,
        int maxRequests,
        long maxRssBytes,
        Duration killGrace,
        Duration restartBackoffInitial,
        Duration restartBackoffMax,
        int crashLoopLimit,
        float breakerFailureRate,
        int breakerWindow,
        int breakerMinCalls,
        Duration breakerOpenDuration,
        int maxConcurrent,
        int rateLimitPerSecond,
        boolean testMode,
        int maxFrameBytes,
        Map<String, String> extraEnv,
        WorkerStartMode startMode) {

    public static final int DEFAULT_MAX_FRAME_BYTES = 256 * 1024 * 1024;

    public WorkerPoolConfig {
        Objects.requireNonNull(startupTimeout, "startupTimeout");
        Objects.requireNonNull(borrowWait, "borrowWait");
        Objects.requireNonNull(pingInterval, "pingInterval");
        Objects.requireNonNull(pingTimeout, "pingTimeout");
        Objects.requireNonNull(killGrace, "killGrace");
        Objects.requireNonNull(restartBackoffInitial, "restartBackoffInitial");
        Objects.requireNonNull(restartBackoffMax, "restartBackoffMax");
        Objects.requireNonNull(breakerOpenDuration, "breakerOpenDuration");
        if (workers < 1) throw new IllegalArgumentException("workers must be >= 1, got " + workers);
        if (maxConcurrent < 1) throw new IllegalArgumentException("maxConcurrent must be >= 1, got " + maxConcurrent);
        if (maxRequests < 0) throw new IllegalArgumentException("maxRequests must be >= 0");
        if (maxRssBytes < 0) throw new IllegalArgumentException("maxRssBytes must be >= 0");
        if (crashLoopLimit < 1) throw new IllegalArgumentException("crashLoopLimit must be >= 1");
        if (rateLimitPerSecond < 0) throw new IllegalArgumentException("rateLimitPerSecond must be >= 0");
        if (maxFrameBytes < 65536) throw new IllegalArgumentException("maxFrameBytes must be >= 65536 (the worker's minimum)");
        if (breakerFailureRate <= 0 || breakerFailureRate > 100) throw new IllegalArgumentException("breakerFailureRate must be in (0, 100]");
        if (breakerWindow < 1 || breakerMinCalls < 1) throw new IllegalArgumentException("breaker window/min calls must be >= 1");
        if (borrowWait.isNegative()) throw new IllegalArgumentException("borrowWait must be >= 0 (0 = up to the deadline)");
        for (Duration d : new Duration[] {startupTimeout, pingInterval, pingTimeout, killGrace,
                restartBackoffInitial, restartBackoffMax, breakerOpenDuration}) {
            if (d.isNegative() || d.isZero()) throw new IllegalArgumentException("durations must be positive: " + d);
        }
        extraEnv = extraEnv == null ? Map.of() : Map.copyOf(extraEnv);
        Objects.requireNonNull(startMode, "startMode");
    }

    /**
     * Defaults for everything; {@code python} is null and must be set with {@link #withPython}. What is also an
     * engine setting takes its default from {@link EngineConfig#SETTINGS} (one default in one place).
     */
    public static WorkerPoolConfig defaults() {
        return new WorkerPoolConfig(
                null,
                Math.max(1, Runtime.getRuntime().availableProcessors()),
                null,
                null,
                Duration.ofSeconds(setting("worker_startup_timeout_s")),
                Duration.ofMillis(setting("queue_wait_ms")),
                Duration.ofSeconds(10),
                Duration.ofSeconds(5),
                (int) setting("worker_max_requests"),
                setting("worker_max_rss_mb") << 20,
                Duration.ofSeconds(2),
                Duration.ofMillis(200),
                Duration.ofSeconds(10),
                5,
                50f,
                20,
                10,
                Duration.ofSeconds(10),
                (int) setting("max_concurrent"),
                (int) setting("rate_limit"),
                false,
                DEFAULT_MAX_FRAME_BYTES,
                Map.of(),
                WorkerStartMode.FORK_SERVER);
    }

    private static long setting(String key) {
        return Long.parseLong(EngineConfig.defaultOf(key));
    }

    public WorkerPoolConfig withPython(Path p) {
        return new WorkerPoolConfig(p, workers, runtimeDir, workingDir, startupTimeout, borrowWait, pingInterval, pingTimeout,
                maxRequests, maxRssBytes, killGrace, restartBackoffInitial, restartBackoffMax, crashLoopLimit,
                breakerFailureRate, breakerWindow, breakerMinCalls, breakerOpenDuration, maxConcurrent,
                rateLimitPerSecond, testMode, maxFrameBytes, extraEnv, startMode);
    }

    public WorkerPoolConfig withWorkers(int n) {
        return new WorkerPoolConfig(python, n, runtimeDir, workingDir, startupTimeout, borrowWait, pingInterval, pingTimeout,
                maxRequests, maxRssBytes, killGrace, restartBackoffInitial, restartBackoffMax, crashLoopLimit,
                breakerFailureRate, breakerWindow, breakerMinCalls, breakerOpenDuration, maxConcurrent,
                rateLimitPerSecond, testMode, maxFrameBytes, extraEnv, startMode);
    }

    public WorkerPoolConfig withRuntimeDir(Path dir) {
        return new WorkerPoolConfig(python, workers, dir, workingDir, startupTimeout, borrowWait, pingInterval, pingTimeout,
                maxRequests, maxRssBytes, killGrace, restartBackoffInitial, restartBackoffMax, crashLoopLimit,
                breakerFailureRate, breakerWindow, breakerMinCalls, breakerOpenDuration, maxConcurrent,
                rateLimitPerSecond, testMode, maxFrameBytes, extraEnv, startMode);
    }

    public WorkerPoolConfig withWorkingDir(Path dir) {
        return new WorkerPoolConfig(python, workers, runtimeDir, dir, startupTimeout, borrowWait, pingInterval, pingTimeout,
                maxRequests, maxRssBytes, killGrace, restartBackoffInitial, restartBackoffMax, crashLoopLimit,
                breakerFailureRate, breakerWindow, breakerMinCalls, breakerOpenDuration, maxConcurrent,
                rateLimitPerSecond, testMode, maxFrameBytes, extraEnv, startMode);
    }

    public WorkerPoolConfig withTestMode(boolean on) {
        return new WorkerPoolConfig(python, workers, runtimeDir, workingDir, startupTimeout, borrowWait, pingInterval, pingTimeout,
                maxRequests, maxRssBytes, killGrace, restartBackoffInitial, restartBackoffMax, crashLoopLimit,
                breakerFailureRate, breakerWindow, breakerMinCalls, breakerOpenDuration, maxConcurrent,
                rateLimitPerSecond, on, maxFrameBytes, extraEnv, startMode);
    }

    public WorkerPoolConfig withExtraEnv(Map<String, String> env) {
        return new WorkerPoolConfig(python, workers, runtimeDir, workingDir, startupTimeout, borrowWait, pingInterval, pingTimeout,
                maxRequests, maxRssBytes, killGrace, restartBackoffInitial, restartBackoffMax, crashLoopLimit,
                breakerFailureRate, breakerWindow, breakerMinCalls, breakerOpenDuration, maxConcurrent,
                rateLimitPerSecond, testMode, maxFrameBytes, env, startMode);
    }

    public WorkerPoolConfig withRecycling(int maxRequests, long maxRssBytes) {
        return new WorkerPoolConfig(python, workers, runtimeDir, workingDir, startupTimeout, borrowWait, pingInterval, pingTimeout,
                maxRequests, maxRssBytes, killGrace, restartBackoffInitial, restartBackoffMax, crashLoopLimit,
                breakerFailureRate, breakerWindow, breakerMinCalls, breakerOpenDuration, maxConcurrent,
                rateLimitPerSecond, testMode, maxFrameBytes, extraEnv, startMode);
    }

    public WorkerPoolConfig withRestart(Duration initial, Duration max, int crashLoopLimit) {
        return new WorkerPoolConfig(python, workers, runtimeDir, workingDir, startupTimeout, borrowWait, pingInterval, pingTimeout,
                maxRequests, maxRssBytes, killGrace, initial, max, crashLoopLimit,
                breakerFailureRate, breakerWindow, breakerMinCalls, breakerOpenDuration, maxConcurrent,
                rateLimitPerSecond, testMode, maxFrameBytes, extraEnv, startMode);
    }

    public WorkerPoolConfig withBreaker(float failureRate, int window, int minCalls, Duration open) {
        return new WorkerPoolConfig(python, workers, runtimeDir, workingDir, startupTimeout, borrowWait, pingInterval, pingTimeout,
                maxRequests, maxRssBytes, killGrace, restartBackoffInitial, restartBackoffMax, crashLoopLimit,
                failureRate, window, minCalls, open, maxConcurrent,
                rateLimitPerSecond, testMode, maxFrameBytes, extraEnv, startMode);
    }

    public WorkerPoolConfig withLimits(int maxConcurrent, int rateLimitPerSecond, Duration borrowWait) {
        return new WorkerPoolConfig(python, workers, runtimeDir, workingDir, startupTimeout, borrowWait, pingInterval, pingTimeout,
                maxRequests, maxRssBytes, killGrace, restartBackoffInitial, restartBackoffMax, crashLoopLimit,
                breakerFailureRate, breakerWindow, breakerMinCalls, breakerOpenDuration, maxConcurrent,
                rateLimitPerSecond, testMode, maxFrameBytes, extraEnv, startMode);
    }

    public WorkerPoolConfig withTimeouts(Duration startupTimeout, Duration pingInterval, Duration pingTimeout, Duration killGrace) {
        return new WorkerPoolConfig(python, workers, runtimeDir, workingDir, startupTimeout, borrowWait, pingInterval, pingTimeout,
                maxRequests, maxRssBytes, killGrace, restartBackoffInitial, restartBackoffMax, crashLoopLimit,
                breakerFailureRate, breakerWindow, breakerMinCalls, breakerOpenDuration, maxConcurrent,
                rateLimitPerSecond, testMode, maxFrameBytes, extraEnv, startMode);
    }

    public WorkerPoolConfig withMaxFrameBytes(int bytes) {
        return new WorkerPoolConfig(python, workers, runtimeDir, workingDir, startupTimeout, borrowWait, pingInterval, pingTimeout,
                maxRequests, maxRssBytes, killGrace, restartBackoffInitial, restartBackoffMax, crashLoopLimit,
                breakerFailureRate, breakerWindow, breakerMinCalls, breakerOpenDuration, maxConcurrent,
                rateLimitPerSecond, testMode, bytes, extraEnv, startMode);
    }

    public WorkerPoolConfig withStartMode(WorkerStartMode mode) {
        return new WorkerPoolConfig(python, workers, runtimeDir, workingDir, startupTimeout, borrowWait, pingInterval, pingTimeout,
                maxRequests, maxRssBytes, killGrace, restartBackoffInitial, restartBackoffMax, crashLoopLimit,
                breakerFailureRate, breakerWindow, breakerMinCalls, breakerOpenDuration, maxConcurrent,
                rateLimitPerSecond, testMode, maxFrameBytes, extraEnv, mode);
    }
}
