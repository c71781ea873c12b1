package analytics.engine.workers;

import analytics.engine.dispatch.AnalysisException;
import analytics.engine.dispatch.AnalysisInput;
import analytics.engine.api.Cancellation;
import analytics.engine.proto.ErrorCode;
import analytics.engine.workers.WorkerHandle.RetireReason;
import analytics.engine.workers.WorkerHandle.State;
import analytics.engine.workers.WorkerSupervisor.Slot;
import analytics.engine.workers.launch.SpawnLauncher;
import analytics.engine.workers.launch.WorkerLauncher;
import analytics.engine.workers.transport.DataFile;
import analytics.engine.workers.transport.WireCodec;
import analytics.engine.workers.transport.WorkerSocketServer;
import io.github.resilience4j.bulkhead.Bulkhead;
import io.github.resilience4j.bulkhead.BulkheadConfig;
import io.github.resilience4j.circuitbreaker.CircuitBreaker;
import io.github.resilience4j.circuitbreaker.CircuitBreakerConfig;
import io.github.resilience4j.ratelimiter.RateLimiter;
import io.github.resilience4j.ratelimiter.RateLimiterConfig;
import io.github.resilience4j.retry.Retry;
import io.github.resilience4j.retry.RetryConfig;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.PooledByteBufAllocator;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.NoSuchElementException;
import java.util.Set;
import java.util.TreeMap;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.commons.pool2.BasePooledObjectFactory;
import org.apache.commons.pool2.DestroyMode;
import org.apache.commons.pool2.PooledObject;
import org.apache.commons.pool2.PooledObjectState;
import org.apache.commons.pool2.impl.DefaultPooledObject;
import org.apache.commons.pool2.impl.GenericObjectPool;
import org.apache.commons.pool2.impl.GenericObjectPoolConfig;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The Python side of the engine: a supervised set of CPython worker processes behind a commons-pool2 pool and
 * resilience4j guards.
 *
 * <h2>How commons-pool2 fits a supervised process set</h2>
 * Processes are owned by the {@link WorkerSupervisor} (spawn, restart with backoff, kill), not by the pool. The
 * pool's factory does not create processes: {@code makeObject()} takes the next worker that completed its hello
 * from the supervisor's ready queue, waiting at most until the borrower's deadline (and giving up early, so the
 * borrower can re-poll the idle deque, when a pooled worker is returned meanwhile). So {@code maxTotal} = worker
 * count bounds the lent-out + idle workers, the pool guarantees one request per worker, and:
 * <ul>
 *   <li>{@code testOnBorrow}: connected, process alive, not retiring; {@code testOnReturn}: additionally not due
 *   for recycling (max requests with jitter, RSS); {@code testWhileIdle} (the pool's evictor, every ping
 *   interval): a ping/pong round trip within the ping timeout, which also reads RSS;</li>
 *   <li>{@code destroyObject} hands the worker back to the supervisor with the reason (recycle: shutdown
 *   message + immediate replacement; broken/timeout: SIGTERM → grace → SIGKILL + immediate replacement; reload:
 *   shutdown message, replacement already running).</li>
 * </ul>
 *
 * <h2>Request path</h2>
 * rate limiter (optional) → bulkhead → circuit breaker → retry (once, only when the worker died) → borrow
 * (bounded wait) → frame written to the worker → response. A scheduled task completes the future with
 * {@code TIMEOUT} exactly at the deadline and kills the worker if it is still computing.
 */
public final class PythonWorkerPool implements PythonBackend {

    private static final Logger log = LoggerFactory.getLogger(PythonWorkerPool.class);

    private final WorkerPoolConfig config;
    private final MeterRegistry meters;
    private final ScheduledExecutorService scheduler;
    /** Only fires request deadlines (kept free of process spawning so TIMEOUT is answered on time). */
    private final ScheduledExecutorService deadlines;
    private final ExecutorService borrowers;
    private final ExecutorService completions;
    private final Bulkhead bulkhead;
    private final RateLimiter rateLimiter;
    private final CircuitBreaker breaker;
    private final Retry retry;
    private final Counter restarts;
    private final Counter timeouts;
    private final Counter recycles;
    private final Counter crashes;
    private final Counter retries;
    private final Timer roundTrip;
    private final Counter sharedMemoryRequests;
    // ---- cancellation (issue 16): see Call.onCancel
    /** Cancelled requests by how they ended: before a worker took them (queued), stopped by their worker, worker killed. */
    private final Counter cancelledQueued;
    private final Counter cancelledStopped;
    private final Counter cancelledKilled;
    /** From the cancellation to its worker being free again (stopped) or replaced (killed). */
    private final Timer cancelRelease;
    /** Requests waiting for a worker, by arrival (for AnalyzeWithProgress's queue position). */
    private final java.util.concurrent.ConcurrentSkipListMap<Long, Call> waiting = new java.util.concurrent.ConcurrentSkipListMap<>();
    private final AtomicLong queueSeq = new AtomicLong();
    /** Arrays of at least this many bytes go to workers that support it through a file (data_file); 0 = never. */
    private final long shmThresholdBytes;
    private final AtomicBoolean started = new AtomicBoolean();
    private final AtomicBoolean closed = new AtomicBoolean();
    private final Object readyMonitor = new Object();
    private final AtomicReference<CompletableFuture<Void>> reloading = new AtomicReference<>();
    private volatile long breakerOpenedNanos;
    private volatile Map<String, Object> algorithmInfo = Map.of();
    private volatile Map<String, String> pythonVersions = Map.of();

    private Path runtimeDir;
    private boolean ownsRuntimeDir;
    private WorkerSocketServer server;
    private WorkerSupervisor supervisor;
    private WorkerLauncher launcher;
    private GenericObjectPool<WorkerHandle> pool;
    private Thread shutdownHook;
    private final ThreadLocal<Long> borrowDeadline = new ThreadLocal<>();

    /**
     * How long a worker that was sent a {@code cancel} frame may take to answer it before it is killed and
     * replaced (it is inside C code that does not return to Python, e.g. one long BLAS call).
     */
    public static final long CANCEL_STOP_WAIT_MS = 250;
    private volatile long cancelStopWaitMs = CANCEL_STOP_WAIT_MS;

    /** Default of {@code shm_threshold_bytes}: arrays of 1 MiB and more go through the runtime directory. */
    public static final long DEFAULT_SHM_THRESHOLD_BYTES = 1L << 20;

    public PythonWorkerPool(WorkerPoolConfig config, MeterRegistry meters) {
        this(config, meters, DEFAULT_SHM_THRESHOLD_BYTES);
    }

    /**
     * @param shmThresholdBytes a data (or target) array of at least this many bytes is written into a file of the
     *                          private runtime directory that the worker maps (PROTOCOL.md, data_file) instead of
     *                          being copied into the msgpack frame; 0 = always msgpack bytes
     */
    public PythonWorkerPool(WorkerPoolConfig config, MeterRegistry meters, long shmThresholdBytes) {
        if (shmThresholdBytes < 0) {
            throw new IllegalArgumentException("shmThresholdBytes must be >= 0, got " + shmThresholdBytes);
        }
        this.shmThresholdBytes = shmThresholdBytes;
        if (config.python() == null) {
            throw new IllegalArgumentException("no Python interpreter configured for the workers "
                    + "(set ANALYTICS_PYTHON, e.g. <repo>/py-worker/.venv/bin/python)");
        }
        this.config = config;
        this.meters = meters;
        // Core threads never time out: workers are spawned on these threads and their PDEATHSIG is tied to them.
        ScheduledThreadPoolExecutor s = new ScheduledThreadPoolExecutor(2, daemon("worker-supervisor"));
        s.setRemoveOnCancelPolicy(true);
        s.prestartAllCoreThreads();
        this.scheduler = s;
        ScheduledThreadPoolExecutor dl = new ScheduledThreadPoolExecutor(1, daemon("python-deadline"));
        dl.setRemoveOnCancelPolicy(true);
        this.deadlines = dl;
        ThreadPoolExecutor b = new ThreadPoolExecutor(config.maxConcurrent(), config.maxConcurrent(), 30,
                TimeUnit.SECONDS, new LinkedBlockingQueue<>(), daemon("python-borrow"));
        b.allowCoreThreadTimeOut(true);
        this.borrowers = b;
        ThreadPoolExecutor c = new ThreadPoolExecutor(2, 2, 30, TimeUnit.SECONDS, new LinkedBlockingQueue<>(),
                daemon("python-complete"));
        c.allowCoreThreadTimeOut(true);
        this.completions = c;
        this.bulkhead = Bulkhead.of("python", BulkheadConfig.custom()
                .maxConcurrentCalls(config.maxConcurrent()).maxWaitDuration(Duration.ZERO).build());
        this.rateLimiter = config.rateLimitPerSecond() <= 0 ? null : RateLimiter.of("python", RateLimiterConfig.custom()
                .limitForPeriod(config.rateLimitPerSecond()).limitRefreshPeriod(Duration.ofSeconds(1))
                .timeoutDuration(Duration.ZERO).build());
        this.breaker = CircuitBreaker.of("python", CircuitBreakerConfig.custom()
                .slidingWindowType(CircuitBreakerConfig.SlidingWindowType.COUNT_BASED)
                .slidingWindowSize(config.breakerWindow())
                .minimumNumberOfCalls(config.breakerMinCalls())
                .failureRateThreshold(config.breakerFailureRate())
                .waitDurationInOpenState(config.breakerOpenDuration())
                .permittedNumberOfCallsInHalfOpenState(2)
                .automaticTransitionFromOpenToHalfOpenEnabled(true)
                .build());
        breaker.getEventPublisher().onStateTransition(e -> {
            if (e.getStateTransition().getToState() == CircuitBreaker.State.OPEN) {
                breakerOpenedNanos = System.nanoTime();
            }
            log.warn("Python circuit breaker: {}", e.getStateTransition());
        });
        this.retry = Retry.of("python", RetryConfig.custom()
                .maxAttempts(2)
                .waitDuration(Duration.ZERO)
                .retryOnException(t -> unwrap(t) instanceof WorkerDiedException d && d.retryable())
                .failAfterMaxAttempts(false)
                .build());
        this.restarts = Counter.builder("analytics.python.worker.restarts").description("worker processes started to replace another").register(meters);
        this.timeouts = Counter.builder("analytics.python.timeouts").description("requests answered TIMEOUT at their deadline").register(meters);
        this.recycles = Counter.builder("analytics.python.worker.recycles").description("workers recycled (max requests / RSS)").register(meters);
        this.crashes = Counter.builder("analytics.python.worker.crashes").description("unexpected worker exits").register(meters);
        this.retries = Counter.builder("analytics.python.retries").description("requests retried after their worker died").register(meters);
        this.sharedMemoryRequests = Counter.builder("analytics.python.shm.requests")
                .description("requests whose arrays went to the worker through a runtime-dir file (data_file)").register(meters);
        Counter.Builder cancelled = Counter.builder("analytics.python.cancellations")
                .description("Python requests cancelled by their client (or its lost connection), by how they ended");
        this.cancelledQueued = cancelled.tag("how", "queued").register(meters);
        this.cancelledStopped = cancelled.tag("how", "stopped").register(meters);
        this.cancelledKilled = cancelled.tag("how", "killed").register(meters);
        this.cancelRelease = Timer.builder("analytics.python.cancel.release")
                .description("from a running request's cancellation to its worker free again (or replaced)")
                .publishPercentileHistogram().register(meters);
        this.roundTrip = Timer.builder("analytics.python.roundtrip").description("Python request round trip").publishPercentileHistogram().register(meters);
        for (String st : List.of("ready", "busy", "starting", "down")) {
            Gauge.builder("analytics.python.workers", this, p -> p.countByState().getOrDefault(st, 0))
                    .tag("state", st).description("Python workers by state").register(meters);
        }
        Gauge.builder("analytics.python.breaker.open", this, p -> p.breaker.getState() == CircuitBreaker.State.OPEN ? 1 : 0)
                .description("1 while the Python circuit breaker is open (Python requests answered UNAVAILABLE), else 0")
                .register(meters);
        // Monitoring (deploy/prometheus): the workers share the unit's cgroup, so MemoryMax covers them too.
        Gauge.builder("analytics.python.workers.resident.memory", this, PythonWorkerPool::workersRssBytes)
                .baseUnit("bytes")
                .description("Resident memory of all live Python worker processes, as last measured by their pings")
                .register(meters);
    }

    private long workersRssBytes() {
        WorkerSupervisor s = supervisor;
        return s == null ? 0 : s.live.stream().mapToLong(h -> Math.max(0, h.rssBytes)).sum();
    }

    private static java.util.concurrent.ThreadFactory daemon(String name) {
        AtomicInteger n = new AtomicInteger();
        return r -> {
            Thread t = new Thread(r, name + "-" + n.incrementAndGet());
            t.setDaemon(true);
            return t;
        };
    }

    // ================================================================= lifecycle

    /** Creates the runtime dir, listens on workers.sock and spawns all workers (does not wait for them). */
    public synchronized void start() {
        if (closed.get()) {
            throw new IllegalStateException("pool is closed");
        }
        if (!started.compareAndSet(false, true)) {
            return;
        }
        if (config.python().getNameCount() > 1 && !Files.isExecutable(config.python())) { // a bare name is looked up in PATH
            log.error("the configured Python interpreter {} does not exist or is not executable; workers will fail to start",
                    config.python());
        }
        try {
            var perms = PosixFilePermissions.fromString("rwx------");
            if (config.runtimeDir() == null) {
                runtimeDir = Files.createTempDirectory("analytics-engine-", PosixFilePermissions.asFileAttribute(perms));
                ownsRuntimeDir = true;
            } else {
                runtimeDir = config.runtimeDir().toAbsolutePath();
                Files.createDirectories(runtimeDir, PosixFilePermissions.asFileAttribute(perms));
                Files.setPosixFilePermissions(runtimeDir, perms);
            }
            Path sock = runtimeDir.resolve("workers.sock");
            if (sock.toString().getBytes(StandardCharsets.UTF_8).length > 100) {
                throw new IllegalStateException("runtime directory path too long for a Unix socket: " + sock);
            }
            Files.deleteIfExists(sock);
            int stale = DataFile.sweep(runtimeDir);
            if (stale > 0) {
                log.info("removed {} stale data file(s) from {}", stale, runtimeDir);
            }
            List<String> workerArgs = new ArrayList<>(List.of("--max-frame", Integer.toString(config.maxFrameBytes())));
            if (config.preload()) {
                workerArgs.add("--preload");
            }
            if (config.testMode()) {
                workerArgs.add("--enable-test-algorithms");
            }
            launcher = new SpawnLauncher(config.python(), sock, workerArgs, config.workingDir(), config.extraEnv());
            supervisor = new WorkerSupervisor(config, launcher, scheduler, new Events());
            server = new WorkerSocketServer(sock, config.maxFrameBytes(), config.startupTimeout(), supervisor);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot set up the worker runtime directory: " + e.getMessage(), e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while binding the worker socket", e);
        }
        GenericObjectPoolConfig<WorkerHandle> pc = new GenericObjectPoolConfig<>();
        pc.setMaxTotal(config.workers());
        pc.setMaxIdle(config.workers());
        pc.setMinIdle(0);
        pc.setLifo(false);
        pc.setBlockWhenExhausted(true);
        pc.setTestOnCreate(true);
        pc.setTestOnBorrow(true);
        pc.setTestOnReturn(true);
        pc.setTestWhileIdle(true);
        pc.setTimeBetweenEvictionRuns(config.pingInterval());
        pc.setNumTestsPerEvictionRun(config.workers() + 1);
        pc.setEvictionPolicy((cfg, underTest, idleCount) -> false); // never evict for idleness; validation pings
        pc.setJmxEnabled(false);
        pool = new GenericObjectPool<>(new Factory(), pc);
        shutdownHook = new Thread(this::closeFromHook, "python-workers-shutdown");
        Runtime.getRuntime().addShutdownHook(shutdownHook);
        supervisor.startAll();
        supervisor.startMemoryWatchdog();
        log.info("Python worker pool: {} workers, python {}, socket {}", config.workers(), config.python(),
                runtimeDir.resolve("workers.sock"));
    }

    /**
     * Waits until at least one ({@code all=false}) or every ({@code all=true}) worker is ready. Returns false on
     * timeout, or at once when every slot is down (crash loop).
     */
    public boolean awaitReady(Duration timeout, boolean all) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        synchronized (readyMonitor) {
            while (true) {
                Map<String, Integer> c = countByState();
                int ready = c.getOrDefault("ready", 0) + c.getOrDefault("busy", 0);
                if (all ? ready >= config.workers() : ready >= 1) {
                    return true;
                }
                if (supervisor == null || supervisor.allDown() || closed.get()) {
                    return false;
                }
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    return false;
                }
                TimeUnit.NANOSECONDS.timedWait(readyMonitor, Math.min(left, TimeUnit.MILLISECONDS.toNanos(100)));
            }
        }
    }

    /** {@link #awaitReady(Duration, boolean)} for at least one worker. */
    public boolean awaitReady(Duration timeout) throws InterruptedException {
        return awaitReady(timeout, false);
    }

    private void wakeReadyWaiters() {
        synchronized (readyMonitor) {
            readyMonitor.notifyAll();
        }
    }

    private void closeFromHook() {
        try {
            close();
        } catch (Throwable t) {
            if (supervisor != null) {
                supervisor.killAllNow();
            }
        }
    }

    @Override
    public void close() {
        if (!closed.compareAndSet(false, true)) {
            return;
        }
        if (shutdownHook != null && Thread.currentThread() != shutdownHook) {
            try {
                Runtime.getRuntime().removeShutdownHook(shutdownHook);
            } catch (IllegalStateException ignored) {
                // JVM already shutting down
            }
        }
        if (supervisor != null) {
            supervisor.closeAll();
        }
        if (launcher != null) {
            launcher.close();
        }
        if (pool != null) {
            pool.close();
        }
        if (server != null) {
            server.close();
        }
        wakeReadyWaiters();
        scheduler.shutdownNow();
        deadlines.shutdownNow();
        borrowers.shutdownNow();
        completions.shutdown();
        if (runtimeDir != null) {
            try {
                Files.deleteIfExists(runtimeDir.resolve("workers.sock"));
                DataFile.sweep(runtimeDir);
                if (ownsRuntimeDir) {
                    Files.deleteIfExists(runtimeDir);
                }
            } catch (IOException e) {
                log.warn("could not clean up {}: {}", runtimeDir, e.getMessage());
            }
        }
        log.info("Python worker pool closed");
    }

    /** Runtime directory in use (after start). */
    public Path runtimeDir() {
        return runtimeDir;
    }

    // ================================================================= request path

    @Override
    public CompletableFuture<PythonResult> submit(AnalysisInput input, long timeoutMs, Cancellation cancel,
                                                  PythonBackend.Listener listener) {
        Cancellation.Cause gone = cancel.cause();
        if (gone != null) {
            if (gone.kind() == Cancellation.Kind.DEADLINE) {
                return failed(ErrorCode.TIMEOUT, "the call's deadline passed before the request started");
            }
            cancelledQueued.increment(); // never reached a worker
            return failed(ErrorCode.CANCELLED, "request cancelled before it started: " + gone.reason());
        }
        if (!started.get() || closed.get()) {
            return failed(ErrorCode.UNAVAILABLE, closed.get() ? "the Python worker pool is shut down"
                    : "the Python worker pool is not started");
        }
        if (timeoutMs <= 0) {
            return failed(ErrorCode.INVALID_ARGUMENT, "timeout must be positive, got " + timeoutMs + " ms");
        }
        long estimate = 512L + 8L * input.data().length + (input.target() == null ? 0 : 8L * input.target().length);
        if (input.texts() != null) {
            for (String t : input.texts()) {
                estimate += 8 + (t == null ? 0 : 3L * t.length());
            }
        }
        if (estimate > config.maxFrameBytes()) {
            return failed(ErrorCode.INVALID_ARGUMENT, "request too large for a Python worker: about " + estimate
                    + " bytes, the frame limit is " + config.maxFrameBytes() + " bytes");
        }
        if (rateLimiter != null && !rateLimiter.acquirePermission()) {
            return failed(ErrorCode.OVERLOADED, "Python request rate limit of " + config.rateLimitPerSecond()
                    + " per second exceeded");
        }
        if (!bulkhead.tryAcquirePermission()) {
            return failed(ErrorCode.OVERLOADED, "too many concurrent Python requests (limit "
                    + config.maxConcurrent() + ")");
        }
        if (!breaker.tryAcquirePermission()) {
            bulkhead.onComplete();
            return failed(ErrorCode.UNAVAILABLE, "Python workers are failing: circuit breaker open, retry in "
                    + breakerRetrySeconds() + "s" + downSuffix());
        }
        if (supervisor.allDown()) {
            bulkhead.onComplete();
            AnalysisException e = new AnalysisException(ErrorCode.UNAVAILABLE, "all " + config.workers()
                    + " Python workers are down after repeated start-up failures" + downSuffix()
                    + "; fix the cause and reload the engine");
            breaker.onError(0, TimeUnit.NANOSECONDS, e);
            return CompletableFuture.failedFuture(e);
        }
        Call call = new Call(input, timeoutMs, cancel, listener == null ? PythonBackend.Listener.NONE : listener);
        call.result.whenComplete((r, e) -> finish(call, r, e));
        call.deadlineTask = deadlines.schedule(call::onDeadline, timeoutMs, TimeUnit.MILLISECONDS);
        call.unlisten = cancel.onCancel(call::onCancel); // runs at once if it was cancelled meanwhile
        if (call.result.isDone()) {
            call.unlisten.run(); // answered before the listener was in place (finish saw none)
        }
        retry.executeCompletionStage(scheduler, () -> attempt(call)).whenComplete((r, e) -> {
            if (e == null) {
                call.result.complete(r);
            } else {
                call.result.completeExceptionally(toAnalysisException(call, unwrap(e)));
            }
        });
        return call.result;
    }

    private static CompletableFuture<PythonResult> failed(ErrorCode code, String message) {
        return CompletableFuture.failedFuture(new AnalysisException(code, message));
    }

    private long breakerRetrySeconds() {
        long openFor = config.breakerOpenDuration().toNanos() - (System.nanoTime() - breakerOpenedNanos);
        return Math.max(1, (long) Math.ceil(openFor / 1e9));
    }

    private String downSuffix() {
        if (supervisor == null) {
            return "";
        }
        List<String> why = new ArrayList<>();
        for (Slot s : supervisor.slots) {
            String f = s.lastFailure;
            if (f != null) {
                why.add(f);
            }
        }
        return why.isEmpty() ? "" : " (last failure: " + why.get(why.size() - 1) + ")";
    }

    /** One client request (possibly two attempts). */
    private final class Call {
        final AnalysisInput input;
        final long timeoutMs;
        final long startNanos = System.nanoTime();
        final long deadlineNanos;
        final String id;
        final CompletableFuture<PythonResult> result = new CompletableFuture<>();
        final AtomicReference<WorkerHandle> onWorker = new AtomicReference<>();
        final AtomicInteger attempts = new AtomicInteger();
        final PythonBackend.Listener listener;
        final Cancellation cancel;
        volatile ScheduledFuture<?> deadlineTask;
        volatile boolean everSent;
        /** Deregisters this call from its Cancellation (set once submitted). */
        volatile Runnable unlisten;
        /** When a CANCELLED cancellation answered this call ({@link System#nanoTime()}), else 0. */
        volatile long cancelledAtNanos;
        /** Why this call's computation is being stopped on its worker (CANCELLED, TIMEOUT), else null. */
        volatile RetireReason stopReason;
        /** When the stop was asked for ({@link System#nanoTime()}). */
        volatile long stopAtNanos;
        /** Queue position last reported to the listener. */
        int reportedPosition;

        Call(AnalysisInput input, long timeoutMs, Cancellation cancel, PythonBackend.Listener listener) {
            this.input = input;
            this.timeoutMs = timeoutMs;
            this.cancel = cancel;
            this.listener = listener;
            this.deadlineNanos = startNanos + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
            this.id = input.requestId() == null || input.requestId().isEmpty()
                    ? UUID.randomUUID().toString() : input.requestId();
        }

        /** Runs on the scheduler exactly at the deadline. */
        void onDeadline() {
            WorkerHandle h = onWorker.get();
            String msg = h != null || everSent
                    ? "Python algorithm '" + input.algorithm() + "' did not finish within " + timeoutMs + " ms"
                    : "request timed out after " + timeoutMs + " ms waiting for a free Python worker";
            if (result.completeExceptionally(new AnalysisException(ErrorCode.TIMEOUT, msg))) {
                timeouts.increment();
                WorkerHandle w = onWorker.get();
                if (w != null) {
                    log.warn("request {} ({}) passed its {} ms deadline on worker[{}] pid {}: stopping it", id,
                            input.algorithm(), timeoutMs, w.slot, w.pid);
                    stopOnWorker(this, w, RetireReason.TIMEOUT);
                }
            }
        }

        /**
         * True when this call was answered (deadline, cancellation). A Cancellation is set before its listeners
         * run — one at a time, for every item of a batch — so this applies it at once rather than let a borrower
         * that got a worker meanwhile start work nobody wants.
         */
        boolean abandoned() {
            Cancellation.Cause c = cancel.cause();
            if (c != null && c.kind() == Cancellation.Kind.CANCELLED) {
                onCancel(c); // idempotent: the first of this and the listener answers and counts
            }
            return result.isDone();
        }

        /**
         * The caller's cancellation. A deadline is the same as this call's own deadline. Otherwise the call is
         * answered CANCELLED at once (nothing is retried after it); a queued request leaves the queue (its
         * borrower gives up at its next check); a running one is stopped on its worker: a cancel frame when the
         * worker offers it (it answers CANCELLED and goes back to the pool), else — or when it does not answer
         * within CANCEL_STOP_WAIT_MS — the worker is killed and replaced.
         */
        void onCancel(Cancellation.Cause cause) {
            if (cause.kind() == Cancellation.Kind.DEADLINE) {
                onDeadline();
                return;
            }
            if (!result.completeExceptionally(new AnalysisException(ErrorCode.CANCELLED,
                    "request cancelled: " + cause.reason()))) {
                return; // answered already
            }
            cancelledAtNanos = cause.atNanos();
            waiting.values().remove(this);
            WorkerHandle w = onWorker.get();
            if (w == null) {
                cancelledQueued.increment();
                log.debug("request {} ({}) cancelled while waiting for a worker ({})", id, input.algorithm(), cause.reason());
                return;
            }
            log.debug("request {} ({}) cancelled on worker[{}] pid {} ({}): stopping it", id, input.algorithm(), w.slot,
                    w.pid, cause.reason());
            stopOnWorker(this, w, RetireReason.CANCELLED);
        }
    }

    /**
     * Stops the computation of an answered call (cancelled: CANCELLED; past its deadline: TIMEOUT) on {@code w}: a
     * {@code cancel} frame, after which the worker answers CANCELLED and goes back to the pool; a worker that does not
     * offer it, or does not answer within {@link #CANCEL_STOP_WAIT_MS} (see {@link #cancelStopWait}), is killed and
     * replaced. Safe to call twice
     * (both steps check that the call still owns the worker).
     */
    private void stopOnWorker(Call call, WorkerHandle w, RetireReason reason) {
        if (call.stopReason == null) {
            call.stopAtNanos = System.nanoTime();
            call.stopReason = reason;
        }
        if (w.sendCancel(call.id)) {
            try {
                deadlines.schedule(() -> {
                    if (call.onWorker.compareAndSet(w, null)) {
                        log.warn("worker[{}] pid {} did not stop request {} within {} ms of the cancel: replacing it",
                                w.slot, w.pid, call.id, cancelStopWaitMs);
                        killStuck(call, w);
                    }
                }, cancelStopWaitMs, TimeUnit.MILLISECONDS);
            } catch (java.util.concurrent.RejectedExecutionException e) {
                // closing: the workers are being stopped anyway
            }
        } else if (call.onWorker.compareAndSet(w, null)) {
            killStuck(call, w);
        }
    }

    private void killStuck(Call call, WorkerHandle w) {
        if (call.stopReason == RetireReason.CANCELLED) { // counted before the worker leaves: /health shows both at once
            cancelledKilled.increment();
            cancelRelease.record(System.nanoTime() - call.cancelledAtNanos, TimeUnit.NANOSECONDS);
        }
        invalidate(w, call.stopReason);
    }

    private CompletionStage<PythonResult> attempt(Call call) {
        CompletableFuture<PythonResult> out = new CompletableFuture<>();
        if (call.result.isDone()) {
            out.completeExceptionally(new CancelledAttempt());
            return out;
        }
        if (call.attempts.incrementAndGet() > 1) {
            retries.increment();
            log.info("request {} ({}): retrying on another worker", call.id, call.input.algorithm());
        }
        try {
            WorkerHandle idle = pool.getNumIdle() > 0 ? borrowNow() : null;
            if (idle != null) {
                runAttempt(call, out, idle); // fast path: a worker is free, no thread hop (nothing here blocks)
            } else {
                borrowers.execute(() -> runAttempt(call, out));
            }
        } catch (RuntimeException e) {
            out.completeExceptionally(new AnalysisException(ErrorCode.UNAVAILABLE, "the Python worker pool is shut down"));
        }
        return out;
    }

    /** Borrows an idle worker without waiting, or returns null. */
    private WorkerHandle borrowNow() {
        borrowDeadline.set(System.nanoTime()); // create() must not wait either
        try {
            return pool.borrowObject(Duration.ZERO);
        } catch (Exception e) {
            return null;
        } finally {
            borrowDeadline.remove();
        }
    }

    private void runAttempt(Call call, CompletableFuture<PythonResult> out) {
        WorkerHandle h;
        try {
            h = borrow(call);
        } catch (AnalysisException e) {
            out.completeExceptionally(e);
            return;
        }
        runAttempt(call, out, h);
    }

    private void runAttempt(Call call, CompletableFuture<PythonResult> out, WorkerHandle h) {
        if (call.abandoned()) {
            giveBack(h);
            out.completeExceptionally(new CancelledAttempt());
            return;
        }
        call.onWorker.set(h);
        if (call.result.isDone() && call.onWorker.compareAndSet(h, null)) { // deadline raced with the set
            giveBack(h);
            out.completeExceptionally(new CancelledAttempt());
            return;
        }
        call.listener.running(h.slot);
        boolean watched = call.listener != PythonBackend.Listener.NONE && h.features.contains("progress");
        java.util.function.Consumer<Map<String, Object>> progress = !watched ? null : msg -> {
            if (msg.get("fraction") instanceof Double f && Double.isFinite(f)) {
                call.listener.progress(Math.max(0, Math.min(1, f)), msg.get("detail") instanceof String d ? d : "");
            }
        };
        AnalysisInput in = call.input;
        ByteBuf frame;
        DataFile[] files = toFiles(h, in);
        // The files live as long as this attempt: deleted when the worker answers or fails (crash, protocol error),
        // and at the latest when the call is answered (deadline). A worker that mapped a file keeps its pages until
        // it unmaps, so deleting early never breaks a running computation.
        Runnable dropFiles = () -> {
            for (DataFile f : files) {
                if (f != null) {
                    f.delete();
                }
            }
        };
        if (files[0] != null || files[1] != null) {
            sharedMemoryRequests.increment();
            call.result.whenComplete((r, e) -> dropFiles.run());
        }
        try {
            long left = Math.max(1, TimeUnit.NANOSECONDS.toMillis(call.deadlineNanos - System.nanoTime()));
            frame = WireCodec.encodeRequest(PooledByteBufAllocator.DEFAULT, call.id, in.algorithm(), in.params(),
                    in.data(), in.rows(), in.cols(), in.matrix(), in.target(), in.texts(), left, files[0], files[1], watched);
        } catch (IOException | RuntimeException e) {
            dropFiles.run();
            if (call.onWorker.compareAndSet(h, null)) {
                giveBack(h);
            }
            out.completeExceptionally(new AnalysisException(ErrorCode.INTERNAL, "cannot encode the request: " + e.getMessage()));
            return;
        }
        long sent = System.nanoTime();
        call.everSent = true;
        // Continue off the socket's event loop: pool bookkeeping and the caller's continuations must not run there.
        CompletableFuture<Map<String, Object>> sentFuture = h.send(call.id, frame, progress);
        RetireReason stopping = call.stopReason;
        if (stopping != null && call.onWorker.get() == h) {
            stopOnWorker(call, h, stopping); // stopped while the frame was prepared: a cancel must follow the request
        }
        if (files[0] != null || files[1] != null) {
            // unlinking a large tmpfs file frees its pages: not on the socket's event loop
            sentFuture.whenCompleteAsync((msg, err) -> dropFiles.run(), completions);
        }
        sentFuture.whenCompleteAsync((msg, err) -> {
            long rtt = (System.nanoTime() - sent) / 1000;
            boolean mine = call.onWorker.compareAndSet(h, null);
            if (err != null) {
                Throwable cause = unwrap(err);
                if (cause instanceof WorkerSupervisor.ShutdownException) {
                    out.completeExceptionally(cause); // engine shutting down: UNAVAILABLE, no retry
                    return;
                }
                if (mine) {
                    invalidate(h, RetireReason.BROKEN);
                }
                out.completeExceptionally(cause instanceof WorkerDiedException ? cause
                        : new WorkerDiedException(h.name() + " failed: " + cause.getMessage()));
                return;
            }
            supervisor.markHealthy(h);
            if (mine) {
                if (call.stopReason != null) { // counted before the worker is lent again
                    long ns = System.nanoTime() - call.stopAtNanos;
                    if (call.cancelledAtNanos != 0) {
                        cancelledStopped.increment();
                        cancelRelease.record(System.nanoTime() - call.cancelledAtNanos, TimeUnit.NANOSECONDS);
                    }
                    log.info("worker[{}] stopped request {} ({}): free again {} ms after the stop was asked", h.slot,
                            call.id, call.stopReason == RetireReason.CANCELLED ? "cancelled" : "past its deadline",
                            String.format(java.util.Locale.ROOT, "%.1f", ns / 1e6));
                }
                giveBack(h);
            }
            try {
                out.complete(toResult(h, msg, rtt));
            } catch (AnalysisException e) {
                out.completeExceptionally(e);
            }
        }, completions);
    }

    /**
     * The data and target arrays that go to this worker through runtime-dir files: those of at least
     * {@link #shmThresholdBytes}, when the worker advertised {@code data_file}. A file that cannot be written
     * (e.g. the runtime dir's file system is full) falls back to msgpack bytes with a warning.
     */
    private DataFile[] toFiles(WorkerHandle h, AnalysisInput in) {
        DataFile[] out = new DataFile[2];
        if (shmThresholdBytes <= 0 || !h.features.contains("data_file")) {
            return out;
        }
        try {
            if (in.data() != null && 8L * in.data().length >= shmThresholdBytes) {
                out[0] = DataFile.write(runtimeDir, in.data());
            }
            if (in.target() != null && 8L * in.target().length >= shmThresholdBytes) {
                out[1] = DataFile.write(runtimeDir, in.target());
            }
        } catch (IOException | RuntimeException e) {
            log.warn("cannot write a data file in {} ({}); sending the arrays as msgpack bytes", runtimeDir, e.toString());
            for (DataFile f : out) {
                if (f != null) {
                    f.delete();
                }
            }
            return new DataFile[2];
        }
        return out;
    }

    /**
     * Replaces {@link #CANCEL_STOP_WAIT_MS} (tests: a long wait keeps a slow, loaded machine from turning a stop into
     * a kill). Returns this pool.
     */
    public PythonWorkerPool cancelStopWait(Duration wait) {
        if (wait.isNegative()) {
            throw new IllegalArgumentException("cancel stop wait must be >= 0, got " + wait);
        }
        cancelStopWaitMs = wait.toMillis();
        return this;
    }

    /** Threshold for the shared-memory (runtime-dir file) hand-off, in bytes; 0 = off. */
    public long shmThresholdBytes() {
        return shmThresholdBytes;
    }

    private static PythonResult toResult(WorkerHandle h, Map<String, Object> msg, long rttMicros) throws AnalysisException {
        long compute = 0;
        if (msg.get("timings") instanceof Map<?, ?> t && t.get("compute_us") instanceof Long c) {
            compute = c;
        }
        if (Boolean.TRUE.equals(msg.get("ok"))) {
            if (!(msg.get("result_json") instanceof String json)) {
                throw new AnalysisException(ErrorCode.INTERNAL, "Python worker " + h.slot + " answered ok without result_json");
            }
            return new PythonResult(json, h.slot, compute, rttMicros);
        }
        String code = msg.get("error_code") instanceof String s ? s : "INTERNAL";
        String message = msg.get("error_message") instanceof String s ? s : "Python worker reported an error";
        ErrorCode ec;
        switch (code) {
            case "INVALID_ARGUMENT" -> ec = ErrorCode.INVALID_ARGUMENT;
            case "UNKNOWN_ALGORITHM" -> ec = ErrorCode.UNKNOWN_ALGORITHM;
            case "TIMEOUT" -> ec = ErrorCode.TIMEOUT;
            case "CANCELLED" -> ec = ErrorCode.CANCELLED;
            default -> ec = ErrorCode.INTERNAL;
        }
        throw new AnalysisException(ec, message);
    }

    /** Borrow with a bounded wait; see the class comment for how the factory gets workers. */
    private WorkerHandle borrow(Call call) throws AnalysisException {
        long start = System.nanoTime();
        // The overload budget (borrowWait) only runs down while no worker is restarting: time spent waiting for
        // capacity that is coming back (a crash/kill/recycle replacement starting) is not overload. The total wait is
        // still bounded by the start-up timeout and, always, by the request's deadline. A retry after its worker died
        // gets the start-up timeout as budget (e.g. all workers died at once).
        long budget = call.attempts.get() > 1
                ? Math.max(config.borrowWait().toNanos(), config.startupTimeout().toNanos())
                : config.borrowWait().toNanos();
        long hardEnd = Math.min(call.deadlineNanos,
                start + Math.max(budget, config.startupTimeout().toNanos()));
        long slice = TimeUnit.MILLISECONDS.toNanos(200);
        long ticket = queueSeq.incrementAndGet();
        waiting.put(ticket, call);
        try {
            return borrowQueued(call, start, budget, hardEnd, slice, ticket);
        } finally {
            waiting.remove(ticket);
        }
    }

    private WorkerHandle borrowQueued(Call call, long start, long budget, long hardEnd, long slice, long ticket)
            throws AnalysisException {
        long overloadWaited = 0;
        while (!closed.get()) {
            if (call.abandoned()) { // cancelled or past its deadline: leave the queue
                throw new AnalysisException(ErrorCode.CANCELLED, "request " + call.id + " left the queue");
            }
            if (call.listener != PythonBackend.Listener.NONE) {
                int position = waiting.headMap(ticket).size() + 1;
                if (position != call.reportedPosition) {
                    call.reportedPosition = position;
                    call.listener.queued(position);
                }
            }
            long now = System.nanoTime();
            long left = Math.min(hardEnd - now, budget - overloadWaited);
            if (left <= 0) {
                break;
            }
            boolean restarting = countByState().getOrDefault("starting", 0) > 0;
            long wait = Math.min(left, slice);
            borrowDeadline.set(now + wait);
            try {
                return pool.borrowObject(Duration.ofNanos(wait));
            } catch (WorkerSupervisor.IdleAvailable e) {
                // a pooled worker became idle while we waited for a new one: borrow again
            } catch (NoSuchElementException e) {
                // timed out, or a freshly created worker failed validation: loop decides
            } catch (IllegalStateException e) {
                throw new AnalysisException(ErrorCode.UNAVAILABLE, "the Python worker pool is shut down");
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new AnalysisException(ErrorCode.UNAVAILABLE, "interrupted while waiting for a Python worker");
            } catch (Exception e) {
                throw new AnalysisException(ErrorCode.INTERNAL, "cannot borrow a Python worker: " + e);
            } finally {
                borrowDeadline.remove();
            }
            if (!restarting && countByState().getOrDefault("starting", 0) == 0) {
                overloadWaited += System.nanoTime() - now;
            }
        }
        long waited = (System.nanoTime() - start) / 1_000_000;
        if (closed.get()) {
            throw new AnalysisException(ErrorCode.UNAVAILABLE, "the Python worker pool is shut down");
        }
        Map<String, Integer> c = countByState();
        int running = c.getOrDefault("ready", 0) + c.getOrDefault("busy", 0);
        if (running == 0) {
            throw new AnalysisException(ErrorCode.UNAVAILABLE, "no Python worker is ready (" + c.getOrDefault("starting", 0)
                    + " starting, " + c.getOrDefault("down", 0) + " down)" + downSuffix() + "; waited " + waited + " ms");
        }
        int starting = c.getOrDefault("starting", 0);
        int down = c.getOrDefault("down", 0);
        String others = starting + down == 0 ? "" : " (" + starting + " more starting, " + down + " down)";
        throw new AnalysisException(ErrorCode.OVERLOADED, "all " + (starting + down == 0 ? config.workers() : running)
                + " Python workers are busy" + others + "; waited " + waited + " ms");
    }

    private void giveBack(WorkerHandle h) {
        try {
            pool.returnObject(h);
        } catch (Exception e) {
            log.debug("returning worker[{}] to a closed pool: {}", h.slot, e.toString());
        }
        supervisor.signalAvailability();
    }

    private void invalidate(WorkerHandle h, RetireReason reason) {
        if (h.retireReason == null) {
            h.retireReason = reason;
        }
        try {
            pool.invalidateObject(h, DestroyMode.NORMAL);
        } catch (Exception e) {
            // invalidateObject destroys first, then may try to top the idle set up (ensureIdle → create), which
            // fails without a queued worker: only act if the destroy itself did not happen
            if (!h.destroyed) {
                supervisor.retire(h, reason);
            }
        }
        supervisor.signalAvailability();
    }

    private void finish(Call call, PythonResult r, Throwable e) {
        ScheduledFuture<?> t = call.deadlineTask;
        if (t != null) {
            t.cancel(false);
        }
        Runnable unlisten = call.unlisten;
        if (unlisten != null) {
            unlisten.run();
        }
        bulkhead.onComplete();
        long elapsed = System.nanoTime() - call.startNanos;
        roundTrip.record(elapsed, TimeUnit.NANOSECONDS);
        if (e == null) {
            breaker.onSuccess(elapsed, TimeUnit.NANOSECONDS);
            return;
        }
        Throwable c = unwrap(e);
        ErrorCode code = c instanceof AnalysisException ae ? ae.code() : ErrorCode.INTERNAL;
        switch (code) {
            case TIMEOUT, WORKER_FAILED -> breaker.onError(elapsed, TimeUnit.NANOSECONDS, c);
            // a cancellation says nothing about the workers' health: not counted either way
            case OVERLOADED, UNAVAILABLE, CANCELLED -> breaker.releasePermission();
            default -> breaker.onSuccess(elapsed, TimeUnit.NANOSECONDS); // algorithm errors: the worker is fine
        }
    }

    private AnalysisException toAnalysisException(Call call, Throwable e) {
        if (e instanceof AnalysisException ae) {
            return ae;
        }
        if (e instanceof WorkerDiedException) {
            String retried = call.attempts.get() > 1 ? " (after one retry on another worker)" : "";
            return new AnalysisException(ErrorCode.WORKER_FAILED, e.getMessage() + " while running '"
                    + call.input.algorithm() + "'" + retried);
        }
        if (e instanceof WorkerSupervisor.ShutdownException) {
            return new AnalysisException(ErrorCode.UNAVAILABLE, e.getMessage());
        }
        if (e instanceof CancelledAttempt) {
            // the call was already answered (deadline); this value is never seen by the client
            return new AnalysisException(ErrorCode.TIMEOUT, "request " + call.id + " passed its deadline");
        }
        return new AnalysisException(ErrorCode.INTERNAL, "Python request failed: " + e);
    }

    private static Throwable unwrap(Throwable t) {
        while ((t instanceof CompletionException || t instanceof java.util.concurrent.ExecutionException) && t.getCause() != null) {
            t = t.getCause();
        }
        return t;
    }

    /** The call was answered before this attempt could run. */
    private static final class CancelledAttempt extends RuntimeException {
        CancelledAttempt() {
            super("request already answered", null, false, false);
        }
    }

    // ================================================================= pool factory

    private final class Factory extends BasePooledObjectFactory<WorkerHandle> {
        @Override
        public WorkerHandle create() throws Exception {
            // Only our borrow() may wait here. The pool also calls create() internally (ensureIdle after
            // invalidate/destroy, addObject) on whatever thread it is on — possibly the socket's event loop,
            // which must never block (it is the thread that would deliver the next hello): no deadline → no wait.
            Long deadline = borrowDeadline.get();
            long d = deadline != null ? deadline : System.nanoTime();
            return supervisor.takeReady(d, () -> pool.getNumIdle() > 0);
        }

        @Override
        public PooledObject<WorkerHandle> wrap(WorkerHandle h) {
            return new DefaultPooledObject<>(h);
        }

        @Override
        public boolean validateObject(PooledObject<WorkerHandle> p) {
            WorkerHandle h = p.getObject();
            if (!h.usable() || h.needsRecycle(config.maxRssBytes())) {
                return false;
            }
            if (p.getState() == PooledObjectState.EVICTION) { // idle check by the pool's evictor: ping
                try {
                    h.ping().get(config.pingTimeout().toMillis(), TimeUnit.MILLISECONDS);
                    supervisor.markHealthy(h);
                    if (h.needsRecycle(config.maxRssBytes())) {
                        log.info("worker[{}] pid {} RSS {} bytes is over the limit of {}: recycling", h.slot, h.pid,
                                h.rssBytes, config.maxRssBytes());
                        return false;
                    }
                } catch (java.util.concurrent.TimeoutException e) {
                    log.warn("worker[{}] pid {} did not answer a ping within {} ms: replacing it", h.slot, h.pid,
                            config.pingTimeout().toMillis());
                    h.retireReason = RetireReason.BROKEN;
                    return false;
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    return false;
                } catch (Exception e) {
                    if (!supervisor.isClosing() && !h.ended.get()) {
                        log.warn("worker[{}] pid {}: ping failed ({}): replacing it", h.slot, h.pid, unwrap(e).getMessage());
                        h.retireReason = RetireReason.BROKEN;
                    }
                    return false;
                }
            }
            return true;
        }

        @Override
        public void destroyObject(PooledObject<WorkerHandle> p, DestroyMode mode) {
            WorkerHandle h = p.getObject();
            h.destroyed = true;
            if (supervisor.isClosing() || h.ended.get()) {
                supervisor.signalAvailability();
                fillPoolSoon();
                return;
            }
            RetireReason reason = h.retireReason;
            if (reason == RetireReason.BROKEN && h.retiring.get() == false
                    && (!h.processAlive() || h.connection == null || !h.connection.isActive())) {
                // It is dying by itself (crash, kill -9, lost connection): the supervisor's end-of-process path
                // restarts it with crash accounting (backoff, crash-loop limit). Make sure that path runs.
                supervisor.ensureEnding(h);
                supervisor.signalAvailability();
                fillPoolSoon();
                return;
            }
            if (reason == null) {
                if (h.retireRequested) {
                    reason = RetireReason.RELOAD;
                } else if (h.needsRecycle(config.maxRssBytes())) {
                    reason = RetireReason.RECYCLE;
                    log.info("worker[{}] pid {} recycled after {} requests (rss {} bytes)", h.slot, h.pid,
                            h.requests.get(), h.rssBytes);
                } else {
                    reason = RetireReason.BROKEN;
                }
            }
            supervisor.retire(h, reason);
            supervisor.signalAvailability();
            fillPoolSoon();
        }
    }

    /**
     * Moves workers that completed their hello into the pool's idle set while it has room, so that borrowers
     * blocked on the idle deque see them at once and the evictor pings them. Called when a worker becomes ready
     * and whenever the pool destroys one (room appears).
     */
    private void fillPoolSoon() {
        try {
            scheduler.execute(this::fillPool);
        } catch (java.util.concurrent.RejectedExecutionException e) {
            // closing
        }
    }

    private void fillPool() {
        GenericObjectPool<WorkerHandle> p = pool;
        while (p != null && !closed.get() && supervisor.hasQueuedReady()
                && p.getNumActive() + p.getNumIdle() < config.workers()) {
            borrowDeadline.set(System.nanoTime()); // never block a supervisor thread
            try {
                p.addObject();
            } catch (Exception e) {
                return; // a borrower took it first, or it died meanwhile
            } finally {
                borrowDeadline.remove();
            }
        }
    }

    // ================================================================= supervisor events → metrics

    private final class Events implements WorkerSupervisor.Events {
        @Override
        public void workerReady(WorkerHandle h) {
            if (!h.algorithms.isEmpty()) {
                algorithmInfo = Map.copyOf(new TreeMap<>(h.algorithms));
            }
            if (!h.versions.isEmpty()) {
                pythonVersions = h.versions;
            }
            wakeReadyWaiters();
            fillPoolSoon();
        }

        @Override
        public void workerCrashed(WorkerHandle h, String description, boolean duringStartup) {
            crashes.increment();
            if (duringStartup) {
                breaker.onError(0, TimeUnit.NANOSECONDS, new WorkerDiedException(description));
            }
            wakeReadyWaiters();
        }

        @Override
        public void workerRestarted(WorkerHandle h) {
            restarts.increment();
        }

        @Override
        public void workerRetired(WorkerHandle h, RetireReason reason) {
            if (reason == RetireReason.RECYCLE) {
                recycles.increment();
            }
        }
    }

    // ================================================================= visibility

    private Map<String, Integer> countByState() {
        Map<String, Integer> c = new LinkedHashMap<>();
        c.put("ready", 0);
        c.put("busy", 0);
        c.put("starting", 0);
        c.put("down", 0);
        WorkerSupervisor s = supervisor;
        if (s == null) {
            return c;
        }
        for (Slot slot : s.slots) {
            c.merge(slotState(slot), 1, Integer::sum);
        }
        return c;
    }

    private static String slotState(Slot slot) {
        if (slot.down) {
            return "down";
        }
        WorkerHandle h = slot.current;
        if (h == null || h.ended.get()) {
            return "starting";
        }
        return switch (h.state) {
            case READY -> "ready";
            case BUSY -> "busy";
            case RETIRING -> h.inFlight.get() != null ? "busy" : "starting";
            default -> "starting";
        };
    }

    @Override
    public boolean isAvailable() {
        if (!started.get() || closed.get() || supervisor.allDown()) {
            return false;
        }
        return breaker.getState() != CircuitBreaker.State.OPEN && breaker.getState() != CircuitBreaker.State.FORCED_OPEN;
    }

    @Override
    public Set<String> algorithms() {
        return algorithmInfo.keySet();
    }

    /** The per-algorithm descriptions from the workers' hello (description, required, optional, input). */
    public Map<String, Object> algorithmInfo() {
        return algorithmInfo;
    }

    @Override
    public Map<String, Object> status() {
        Map<String, Object> st = new LinkedHashMap<>();
        st.put("available", isAvailable());
        st.put("workers", countByState());
        List<Map<String, Object>> list = new ArrayList<>();
        WorkerSupervisor s = supervisor;
        if (s != null) {
            List<WorkerHandle> handles = new ArrayList<>(s.live);
            handles.sort(Comparator.comparingInt((WorkerHandle h) -> h.slot).thenComparingLong(h -> h.generation));
            for (Slot slot : s.slots) {
                boolean any = false;
                for (WorkerHandle h : handles) {
                    if (h.slot != slot.id) {
                        continue;
                    }
                    any = true;
                    Map<String, Object> w = new LinkedHashMap<>();
                    w.put("id", h.slot);
                    w.put("pid", h.pid);
                    w.put("state", h == slot.current ? slotState(slot) : "retiring");
                    w.put("requests", h.requests.get());
                    w.put("restarts", slot.restarts);
                    w.put("rss_bytes", h.rssBytes);
                    w.put("uptime_s", Math.round(h.uptimeSeconds() * 10) / 10.0);
                    list.add(w);
                }
                if (!any) {
                    Map<String, Object> w = new LinkedHashMap<>();
                    w.put("id", slot.id);
                    w.put("pid", -1);
                    w.put("state", slot.down ? "down" : "starting");
                    w.put("requests", 0);
                    w.put("restarts", slot.restarts);
                    w.put("rss_bytes", -1);
                    w.put("uptime_s", 0.0);
                    if (slot.lastFailure != null) {
                        w.put("last_failure", slot.lastFailure);
                    }
                    list.add(w);
                } else if (slot.down || slot.lastFailure != null) {
                    list.get(list.size() - 1).put("last_failure", slot.lastFailure);
                }
            }
        }
        st.put("worker_list", list);
        st.put("breaker", breaker.getState().name());
        st.put("in_flight", config.maxConcurrent() - bulkhead.getMetrics().getAvailableConcurrentCalls());
        GenericObjectPool<WorkerHandle> p = pool;
        if (p != null) {
            st.put("pool", Map.of("idle", p.getNumIdle(), "lent", p.getNumActive(), "waiting", p.getNumWaiters()));
        }
        st.put("max_concurrent", config.maxConcurrent());
        st.put("python", pythonVersions);
        st.put("restarts_total", s == null ? 0 : s.restartsTotal());
        st.put("reloading", reloading.get() != null && !reloading.get().isDone());
        return st;
    }

    // ================================================================= rolling reload

    @Override
    public void reload() {
        reloadAsync();
    }

    /**
     * Replaces every worker, one slot at a time: spawn the new process, wait for its hello, then retire the old
     * one as soon as it is idle (it finishes its current request). Slots that were down are retried. A reload
     * requested while one is running returns the running one's future.
     */
    public CompletableFuture<Void> reloadAsync() {
        if (!started.get() || closed.get()) {
            return CompletableFuture.failedFuture(new IllegalStateException("pool not running"));
        }
        CompletableFuture<Void> mine = new CompletableFuture<>();
        CompletableFuture<Void> running = reloading.get();
        if (running != null && !running.isDone()) {
            return running;
        }
        if (!reloading.compareAndSet(running, mine)) {
            return reloading.get();
        }
        Thread t = new Thread(() -> {
            try {
                doReload();
                mine.complete(null);
            } catch (Throwable e) {
                log.error("rolling reload failed: {}", e.toString());
                mine.completeExceptionally(e);
            }
        }, "python-workers-reload");
        t.setDaemon(true);
        t.start();
        return mine;
    }

    private void doReload() throws Exception {
        log.info("rolling reload of {} Python workers", config.workers());
        if (breaker.getState() != CircuitBreaker.State.CLOSED) {
            breaker.transitionToClosedState(); // the operator asks us to try again
        }
        List<String> failures = new ArrayList<>();
        for (Slot slot : supervisor.slots) {
            if (closed.get()) {
                return;
            }
            WorkerHandle old = slot.current;
            boolean wasDown = slot.down;
            supervisor.resetSlot(slot);
            boolean oldServing = old != null && !wasDown && !old.ended.get() && !old.retiring.get()
                    && old.state != State.STARTING;
            if (oldServing && !old.replaced.compareAndSet(false, true)) {
                oldServing = false; // its replacement is already on the way
                continue;
            }
            if (!oldServing && old != null && !old.ended.get() && !wasDown) {
                continue; // starting right now: it runs the code on disk already
            }
            WorkerHandle fresh = supervisor.spawnOnSupervisorThread(slot).get();
            if (fresh == null) {
                return;
            }
            try {
                fresh.readyFuture.get(config.startupTimeout().toMillis() + 1000, TimeUnit.MILLISECONDS);
            } catch (Exception e) {
                String why = "worker " + slot.id + ": replacement did not start: " + unwrap(e).getMessage();
                failures.add(why);
                log.error("rolling reload: {}", why);
                if (oldServing) {
                    supervisor.revert(slot, old, fresh);
                }
                continue;
            }
            if (oldServing) {
                old.retireRequested = true;
                if (supervisor.removeReady(old)) {
                    supervisor.retire(old, RetireReason.RELOAD);
                } else {
                    try {
                        pool.evict(); // idle → validate fails → destroyed now; busy → on return
                    } catch (Exception e) {
                        log.debug("evict during reload: {}", e.toString());
                    }
                }
                try {
                    old.outOfService.get(Math.max(60_000, config.startupTimeout().toMillis()), TimeUnit.MILLISECONDS);
                } catch (java.util.concurrent.TimeoutException e) {
                    log.warn("rolling reload: worker[{}] pid {} still busy; it retires when its request ends", old.slot, old.pid);
                }
            }
        }
        if (!failures.isEmpty()) {
            throw new IllegalStateException(String.join("; ", failures));
        }
        log.info("rolling reload done");
    }
}
