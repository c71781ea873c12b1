package analytics.engine.workers;

import analytics.engine.config.EngineConfig;
import analytics.engine.workers.launch.WorkerStartMode;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.Objects;

/**
 * Everything the Python worker pool needs: a few top-level values plus one small record per concern
 * ({@link Timeouts}, {@link Recycling}, {@link Restart}, {@link Breaker}, {@link Limits}), each validating its
 * own values. Every default is written once: what is also an engine setting comes from
 * {@link EngineConfig#SETTINGS}, the rest from the {@code defaults()} of its group.
 *
 * @param python        the Python interpreter that has {@code analytics_worker} importable (required: the pool
 *                      refuses null with a message naming ANALYTICS_PYTHON)
 * @param workers       number of worker processes (slots)
 * @param runtimeDir    directory for {@code workers.sock}; null → a fresh temp dir (0700) removed on close,
 *                      otherwise created (0700) if missing and left in place on close
 * @param workingDir    working directory of the worker processes; null → the JVM's
 * @param startMode     how workers start: forked from a warm template (default), or spawned (optionally
 *                      with {@code --preload}); see docs/WORKERS.md
 * @param testMode      pass {@code --enable-test-algorithms} to the workers (test suites only)
 * @param maxFrameBytes largest msgpack frame body in either direction
 * @param extraEnv      additional environment for the workers (e.g. PYTHONPATH)
 */
public record WorkerPoolConfig(
        Path python,
        int workers,
        Path runtimeDir,
        Path workingDir,
        WorkerStartMode startMode,
        boolean testMode,
        int maxFrameBytes,
        Map<String, String> extraEnv,
        Timeouts timeouts,
        Recycling recycling,
        Restart restart,
        Breaker breaker,
        Limits limits) {

    public static final int DEFAULT_MAX_FRAME_BYTES = 256 * 1024 * 1024;

    public WorkerPoolConfig {
        Objects.requireNonNull(startMode, "startMode");
        Objects.requireNonNull(timeouts, "timeouts");
        Objects.requireNonNull(recycling, "recycling");
        Objects.requireNonNull(restart, "restart");
        Objects.requireNonNull(breaker, "breaker");
        Objects.requireNonNull(limits, "limits");
        if (workers < 1) throw new IllegalArgumentException("workers must be >= 1, got " + workers);
        if (maxFrameBytes < 65536) throw new IllegalArgumentException("maxFrameBytes must be >= 65536 (the worker's minimum)");
        extraEnv = extraEnv == null ? Map.of() : Map.copyOf(extraEnv);
    }

    /** Defaults for everything but the interpreter: one worker per CPU core, a private temp runtime dir. */
    public static WorkerPoolConfig defaults(Path python) {
        return new WorkerPoolConfig(
                python,
                Math.max(1, Runtime.getRuntime().availableProcessors()), // the "workers" setting's empty default
                null,
                null,
                WorkerStartMode.parse(EngineConfig.defaultOf("worker_start")),
                Boolean.parseBoolean(EngineConfig.defaultOf("test_mode")),
                DEFAULT_MAX_FRAME_BYTES,
                Map.of(),
                Timeouts.defaults(),
                Recycling.defaults(),
                Restart.defaults(),
                Breaker.defaults(),
                Limits.defaults());
    }

    private static long setting(String key) {
        return Long.parseLong(EngineConfig.defaultOf(key));
    }

    private static Duration positive(Duration d, String name) {
        Objects.requireNonNull(d, name);
        if (d.isNegative() || d.isZero()) throw new IllegalArgumentException(name + " must be positive, got " + d);
        return d;
    }

    /**
     * How long things may take.
     *
     * @param startup      a spawned worker must send its hello within this time
     * @param borrowWait   optional cap on how long a request waits for a free worker before {@code OVERLOADED};
     *                     zero = up to the request's own deadline (the default)
     * @param pingInterval how often idle workers are pinged (hang detection, RSS for recycling)
     * @param pingTimeout  an idle worker that does not answer a ping within this is replaced
     * @param killGrace    SIGTERM → SIGKILL grace (also shutdown-message → SIGTERM)
     */
    public record Timeouts(Duration startup, Duration borrowWait, Duration pingInterval, Duration pingTimeout,
                           Duration killGrace) {
        public Timeouts {
            positive(startup, "startup");
            Objects.requireNonNull(borrowWait, "borrowWait");
            if (borrowWait.isNegative()) throw new IllegalArgumentException("borrowWait must be >= 0 (0 = up to the deadline)");
            positive(pingInterval, "pingInterval");
            positive(pingTimeout, "pingTimeout");
            positive(killGrace, "killGrace");
        }

        public static Timeouts defaults() {
            return new Timeouts(Duration.ofSeconds(setting("worker_startup_timeout_s")),
                    Duration.ofMillis(setting("queue_wait_ms")),
                    Duration.ofSeconds(10), Duration.ofSeconds(5), Duration.ofSeconds(2));
        }

        public Timeouts withStartup(Duration d) {
            return new Timeouts(d, borrowWait, pingInterval, pingTimeout, killGrace);
        }

        public Timeouts withBorrowWait(Duration d) {
            return new Timeouts(startup, d, pingInterval, pingTimeout, killGrace);
        }

        public Timeouts withPing(Duration interval, Duration timeout) {
            return new Timeouts(startup, borrowWait, interval, timeout, killGrace);
        }

        public Timeouts withKillGrace(Duration d) {
            return new Timeouts(startup, borrowWait, pingInterval, pingTimeout, d);
        }
    }

    /**
     * When a healthy worker is replaced anyway.
     *
     * @param maxRequests recycle a worker after this many requests (±10% jitter); 0 = never
     * @param maxRssBytes recycle a worker whose resident set exceeds this; 0 = never
     */
    public record Recycling(int maxRequests, long maxRssBytes) {
        public Recycling {
            if (maxRequests < 0) throw new IllegalArgumentException("maxRequests must be >= 0");
            if (maxRssBytes < 0) throw new IllegalArgumentException("maxRssBytes must be >= 0");
        }

        public static Recycling defaults() {
            return new Recycling((int) setting("worker_max_requests"), setting("worker_max_rss_mb") << 20);
        }
    }

    /**
     * How crashed workers come back.
     *
     * @param backoffInitial restart delay after the 2nd consecutive crash (the 1st is replaced at once); doubles
     *                       per further crash
     * @param backoffMax     cap of the restart delay
     * @param crashLoopLimit after this many consecutive crashes a slot stays down until {@code reload()}
     */
    public record Restart(Duration backoffInitial, Duration backoffMax, int crashLoopLimit) {
        public Restart {
            positive(backoffInitial, "backoffInitial");
            positive(backoffMax, "backoffMax");
            if (crashLoopLimit < 1) throw new IllegalArgumentException("crashLoopLimit must be >= 1");
        }

        public static Restart defaults() {
            return new Restart(Duration.ofMillis(200), Duration.ofSeconds(10), 5);
        }
    }

    /**
     * The circuit breaker on the Python path.
     *
     * @param failureRate  failure rate threshold in percent
     * @param window       sliding window (calls)
     * @param minCalls     calls needed before the breaker can open
     * @param openDuration how long the breaker stays open before letting probe calls through
     */
    public record Breaker(float failureRate, int window, int minCalls, Duration openDuration) {
        public Breaker {
            if (failureRate <= 0 || failureRate > 100) throw new IllegalArgumentException("breaker failureRate must be in (0, 100]");
            if (window < 1 || minCalls < 1) throw new IllegalArgumentException("breaker window/min calls must be >= 1");
            positive(openDuration, "openDuration");
        }

        public static Breaker defaults() {
            return new Breaker(50f, 20, 10, Duration.ofSeconds(10));
        }
    }

    /**
     * Admission to the Python path.
     *
     * @param maxConcurrent      bulkhead: requests in the Python path at once (waiting + running)
     * @param rateLimitPerSecond optional rate limit on the Python path; 0 = off
     */
    public record Limits(int maxConcurrent, int rateLimitPerSecond) {
        public Limits {
            if (maxConcurrent < 1) throw new IllegalArgumentException("maxConcurrent must be >= 1, got " + maxConcurrent);
            if (rateLimitPerSecond < 0) throw new IllegalArgumentException("rateLimitPerSecond must be >= 0");
        }

        public static Limits defaults() {
            return new Limits((int) setting("max_concurrent"), (int) setting("rate_limit"));
        }
    }

    // One wither per top-level value or group; a group is changed with its own withers or constructor,
    // e.g. cfg.withTimeouts(cfg.timeouts().withBorrowWait(d)).

    public WorkerPoolConfig withPython(Path p) {
        return new WorkerPoolConfig(p, workers, runtimeDir, workingDir, startMode, testMode, maxFrameBytes, extraEnv,
                timeouts, recycling, restart, breaker, limits);
    }

    public WorkerPoolConfig withWorkers(int n) {
        return new WorkerPoolConfig(python, n, runtimeDir, workingDir, startMode, testMode, maxFrameBytes, extraEnv,
                timeouts, recycling, restart, breaker, limits);
    }

    public WorkerPoolConfig withRuntimeDir(Path dir) {
        return new WorkerPoolConfig(python, workers, dir, workingDir, startMode, testMode, maxFrameBytes, extraEnv,
                timeouts, recycling, restart, breaker, limits);
    }

    public WorkerPoolConfig withWorkingDir(Path dir) {
        return new WorkerPoolConfig(python, workers, runtimeDir, dir, startMode, testMode, maxFrameBytes, extraEnv,
                timeouts, recycling, restart, breaker, limits);
    }

    public WorkerPoolConfig withStartMode(WorkerStartMode mode) {
        return new WorkerPoolConfig(python, workers, runtimeDir, workingDir, mode, testMode, maxFrameBytes, extraEnv,
                timeouts, recycling, restart, breaker, limits);
    }

    public WorkerPoolConfig withTestMode(boolean on) {
        return new WorkerPoolConfig(python, workers, runtimeDir, workingDir, startMode, on, maxFrameBytes, extraEnv,
                timeouts, recycling, restart, breaker, limits);
    }

    public WorkerPoolConfig withMaxFrameBytes(int bytes) {
        return new WorkerPoolConfig(python, workers, runtimeDir, workingDir, startMode, testMode, bytes, extraEnv,
                timeouts, recycling, restart, breaker, limits);
    }

    public WorkerPoolConfig withExtraEnv(Map<String, String> env) {
        return new WorkerPoolConfig(python, workers, runtimeDir, workingDir, startMode, testMode, maxFrameBytes, env,
                timeouts, recycling, restart, breaker, limits);
    }

    public WorkerPoolConfig withTimeouts(Timeouts t) {
        return new WorkerPoolConfig(python, workers, runtimeDir, workingDir, startMode, testMode, maxFrameBytes, extraEnv,
                t, recycling, restart, breaker, limits);
    }

    public WorkerPoolConfig withRecycling(Recycling r) {
        return new WorkerPoolConfig(python, workers, runtimeDir, workingDir, startMode, testMode, maxFrameBytes, extraEnv,
                timeouts, r, restart, breaker, limits);
    }

    public WorkerPoolConfig withRestart(Restart r) {
        return new WorkerPoolConfig(python, workers, runtimeDir, workingDir, startMode, testMode, maxFrameBytes, extraEnv,
                timeouts, recycling, r, breaker, limits);
    }

    public WorkerPoolConfig withBreaker(Breaker b) {
        return new WorkerPoolConfig(python, workers, runtimeDir, workingDir, startMode, testMode, maxFrameBytes, extraEnv,
                timeouts, recycling, restart, b, limits);
    }

    public WorkerPoolConfig withLimits(Limits l) {
        return new WorkerPoolConfig(python, workers, runtimeDir, workingDir, startMode, testMode, maxFrameBytes, extraEnv,
                timeouts, recycling, restart, breaker, l);
    }
}
