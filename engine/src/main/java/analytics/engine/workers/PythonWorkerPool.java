package analytics.engine.workers;

import analytics.engine.api.PythonBackend;
import analytics.engine.api.AnalysisException;
import analytics.engine.api.AnalysisInput;
import analytics.engine.api.Cancellation;
import analytics.engine.proto.ErrorCode;
import analytics.engine.workers.WorkerHandle.RetireReason;
import analytics.engine.workers.WorkerSupervisor.Slot;
import analytics.engine.workers.launch.ForkServerLauncher;
import analytics.engine.workers.launch.SpawnLauncher;
import analytics.engine.workers.launch.WorkerLauncher;
import analytics.engine.workers.transport.DataFile;
import analytics.engine.workers.transport.WorkerSocketServer;
import io.micrometer.core.instrument.MeterRegistry;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.ArrayList;
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
import org.apache.commons.pool2.DestroyMode;
import org.apache.commons.pool2.impl.GenericObjectPool;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The Python side of the engine: a supervised set of CPython worker processes behind a commons-pool2 pool and
 * resilience4j guards.
 *
 * <h2>How commons-pool2 fits a supervised process set</h2>
 * Processes are owned by the {@link WorkerSupervisor} (spawn, restart with backoff, kill), not by the pool. The
 * pool's factory does not create processes: {@code makeObject()} takes the next worker that completed its hello
 * from the supervisor's ready queue, without waiting ({@link PooledWorkers}). The pool's capacity ({@code maxTotal}) follows the workers
 * it holds: it grows by one when a worker completes its hello (then {@code addObject()} hands it to a waiting
 * borrower at once) and shrinks when one is destroyed, up to the worker count. So a borrower never asks for a
 * worker that is still starting: {@code borrowObject(Duration)} waits on the idle deque, up to the request's
 * deadline, until a worker is returned or added. The pool guarantees one request per worker, and:
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
 * {@link Admission} (rate limiter, bulkhead, circuit breaker, retry once when the worker died) → borrow (waits up
 * to the request's deadline, or {@code borrowWait} when set) → {@link WorkerCall} (frame written, response). A scheduled task completes the future with
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
    private final Admission admission;
    private final PoolMetrics metrics;
    /** Requests waiting for a worker, by arrival (for AnalyzeWithProgress's queue position). */
    private final java.util.concurrent.ConcurrentSkipListMap<Long, Call> waiting = new java.util.concurrent.ConcurrentSkipListMap<>();
    private final AtomicLong queueSeq = new AtomicLong();
    /** Arrays of at least this many bytes go to workers that support it through a file (data_file); 0 = never. */
    private final long shmThresholdBytes;
    private final AtomicBoolean started = new AtomicBoolean();
    private final AtomicBoolean closed = new AtomicBoolean();
    private final Object readyMonitor = new Object();
    private volatile Map<String, Object> algorithmInfo = Map.of();
    private volatile Map<String, String> pythonVersions = Map.of();

    private Path runtimeDir;
    private boolean ownsRuntimeDir;
    private WorkerSocketServer server;
    private WorkerSupervisor supervisor;
    private WorkerLauncher launcher;
    private GenericObjectPool<WorkerHandle> pool;
    private WorkerCall workerCall;
    private RollingReload reloader;
    private Thread shutdownHook;
    /** The commons-pool2 factory and the pool's capacity. */
    private PooledWorkers pooled;

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
        ThreadPoolExecutor b = new ThreadPoolExecutor(config.limits().maxConcurrent(), config.limits().maxConcurrent(), 30,
                TimeUnit.SECONDS, new LinkedBlockingQueue<>(), daemon("python-borrow"));
        b.allowCoreThreadTimeOut(true);
        this.borrowers = b;
        ThreadPoolExecutor c = new ThreadPoolExecutor(2, 2, 30, TimeUnit.SECONDS, new LinkedBlockingQueue<>(),
                daemon("python-complete"));
        c.allowCoreThreadTimeOut(true);
        this.completions = c;
        this.admission = new Admission(config, meters, PythonWorkerPool::unwrap);
        this.metrics = new PoolMetrics(meters, this);
    }

    long workersRssBytes() {
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
            if (config.testMode()) {
                workerArgs.add("--enable-test-algorithms");
            }
            // ---- issue 11: choose how workers start (fork-server by default, spawn as the fallback/option)
            launcher = switch (config.startMode()) {
                case FORK_SERVER -> new ForkServerLauncher(config.python(), sock, workerArgs, config.workingDir(),
                        config.extraEnv(), config.timeouts().startup());
                case SPAWN -> new SpawnLauncher(config.python(), sock, workerArgs, config.workingDir(), config.extraEnv());
                case SPAWN_PRELOAD -> {
                    List<String> preload = new ArrayList<>(workerArgs);
                    preload.add("--preload");
                    yield new SpawnLauncher(config.python(), sock, preload, config.workingDir(), config.extraEnv());
                }
            };
            supervisor = new WorkerSupervisor(config, launcher, scheduler, new Events());
            server = new WorkerSocketServer(sock, config.maxFrameBytes(), config.timeouts().startup(), supervisor);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot set up the worker runtime directory: " + e.getMessage(), e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while binding the worker socket", e);
        }
        pooled = new PooledWorkers(config, supervisor, scheduler, closed);
        pool = pooled.pool();
        reloader = new RollingReload(config, supervisor, launcher, admission, pool, closed);
        workerCall = new WorkerCall(runtimeDir, shmThresholdBytes, metrics.sharedMemoryRequests, completions,
                this::giveBack, this::invalidate, supervisor::markHealthy,
                h -> h.inService() && !h.needsRecycle(config.recycling().maxRssBytes()));
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
            metrics.cancelledQueued.increment(); // never reached a worker
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
        AnalysisException refused = admission.admit(downSuffix());
        if (refused != null) {
            return CompletableFuture.failedFuture(refused);
        }
        if (supervisor.allDown()) {
            AnalysisException e = new AnalysisException(ErrorCode.UNAVAILABLE, "all " + config.workers()
                    + " Python workers are down after repeated start-up failures" + downSuffix()
                    + "; fix the cause and reload the engine");
            admission.refused(e);
            return CompletableFuture.failedFuture(e);
        }
        Call call = new Call(input, timeoutMs, cancel, listener == null ? PythonBackend.Listener.NONE : listener);
        call.result.whenComplete((r, e) -> finish(call, r, e));
        call.deadlineTask = deadlines.schedule(call::onDeadline, timeoutMs, TimeUnit.MILLISECONDS);
        call.unlisten = cancel.onCancel(call::onCancel); // runs at once if it was cancelled meanwhile
        if (call.result.isDone()) {
            call.unlisten.run(); // answered before the listener was in place (finish saw none)
        }
        admission.retry().executeCompletionStage(scheduler, () -> attempt(call)).whenComplete((r, e) -> {
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
    final class Call {
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

        AnalysisException noWorkerBeforeDeadline() {
            Map<String, Integer> c = countByState();
            return new AnalysisException(ErrorCode.OVERLOADED, "no Python worker became free within the request's "
                    + "deadline of " + timeoutMs + " ms (" + c.getOrDefault("busy", 0) + " busy, "
                    + c.getOrDefault("starting", 0) + " starting)");
        }

        /** Runs on the scheduler exactly at the deadline. */
        void onDeadline() {
            WorkerHandle h = onWorker.get();
            if (h == null && !everSent) {
                // Never reached a worker: the wait for one could not finish before the deadline. That is overload
                // (retry later, elsewhere), not a slow algorithm, and it says nothing about the workers' health.
                result.completeExceptionally(noWorkerBeforeDeadline());
                return;
            }
            String msg = "Python algorithm '" + input.algorithm() + "' did not finish within " + timeoutMs + " ms";
            if (result.completeExceptionally(new AnalysisException(ErrorCode.TIMEOUT, msg))) {
                metrics.timeouts.increment();
                WorkerHandle w = onWorker.get();
                if (w != null) {
                    log.warn("request {} ({}) passed its {} ms deadline on worker[{}] pid {}: stopping it", id,
                            input.algorithm(), timeoutMs, w.slot, w.pid);
                    stopOnWorker(this, w, RetireReason.TIMEOUT);
                }
            }
        }

        /** Called by WorkerCall once the request frame is written: a stop asked for meanwhile must follow it. */
        void sentTo(WorkerHandle h) {
            RetireReason stopping = stopReason;
            if (stopping != null && onWorker.get() == h) {
                stopOnWorker(this, h, stopping);
            }
        }

        /** Called by WorkerCall when {@code h} answered this call and is about to go back to the pool. */
        void answeredOn(WorkerHandle h) {
            if (stopReason == null) {
                return;
            }
            long ns = System.nanoTime() - stopAtNanos;
            if (cancelledAtNanos != 0) { // counted before the worker is lent again
                metrics.cancelledStopped.increment();
                metrics.cancelRelease.record(System.nanoTime() - cancelledAtNanos, TimeUnit.NANOSECONDS);
            }
            log.info("worker[{}] stopped request {} ({}): free again {} ms after the stop was asked", h.slot, id,
                    stopReason == RetireReason.CANCELLED ? "cancelled" : "past its deadline",
                    String.format(java.util.Locale.ROOT, "%.1f", ns / 1e6));
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
                metrics.cancelledQueued.increment();
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
            metrics.cancelledKilled.increment();
            metrics.cancelRelease.record(System.nanoTime() - call.cancelledAtNanos, TimeUnit.NANOSECONDS);
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
            metrics.retries.increment();
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
        try {
            return pool.borrowObject(Duration.ZERO);
        } catch (Exception e) {
            return null; // none idle (the pool's timeout), or closing
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
        workerCall.run(call, out, h);
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

    /**
     * Borrow, waiting at most until the request's own deadline (min of timeout_ms and the gRPC deadline), or
     * for {@code borrowWait} when that optional cap is set; see the class comment for how the factory gets
     * workers. A wait that reaches the deadline is answered OVERLOADED by {@link Call#onDeadline}.
     */
    private WorkerHandle borrow(Call call) throws AnalysisException {
        long start = System.nanoTime();
        long cap = config.timeouts().borrowWait().toNanos(); // 0 = no cap: up to the deadline
        long budget;
        long hardEnd;
        if (cap == 0) {
            budget = Long.MAX_VALUE;
            hardEnd = call.deadlineNanos;
        } else {
            // The cap only runs down while no worker is restarting: time spent waiting for capacity that is
            // coming back (a crash/kill/recycle replacement starting) is not overload. The total wait is still
            // bounded by the start-up timeout and, always, by the request's deadline. A retry after its worker
            // died gets the start-up timeout as budget (e.g. all workers died at once).
            budget = call.attempts.get() > 1 ? Math.max(cap, config.timeouts().startup().toNanos()) : cap;
            hardEnd = Math.min(call.deadlineNanos, start + Math.max(budget, config.timeouts().startup().toNanos()));
        }
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
            if (supervisor.allDown()) {
                break; // nothing will come back before reload(): UNAVAILABLE below
            }
            boolean restarting = countByState().getOrDefault("starting", 0) > 0;
            // Slices only so that the cap's accounting and "every slot went down" are looked at regularly; each
            // slice waits on the pool's own idle deque, which a returned or newly added worker wakes at once.
            long wait = Math.min(left, slice);
            try {
                return pool.borrowObject(Duration.ofNanos(wait));
            } catch (NoSuchElementException e) {
                // the slice ended without a worker, or a new worker failed validation: the loop decides
            } catch (IllegalStateException e) {
                throw new AnalysisException(ErrorCode.UNAVAILABLE, "the Python worker pool is shut down");
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new AnalysisException(ErrorCode.UNAVAILABLE, "interrupted while waiting for a Python worker");
            } catch (Exception e) {
                throw new AnalysisException(ErrorCode.INTERNAL, "cannot borrow a Python worker: " + e);
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
        if (running > 0 && System.nanoTime() - call.deadlineNanos >= 0) {
            throw call.noWorkerBeforeDeadline(); // the same answer as the deadline task's, whichever comes first
        }
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
        long elapsed = System.nanoTime() - call.startNanos;
        metrics.roundTrip.record(elapsed, TimeUnit.NANOSECONDS);
        Throwable c = e == null ? null : unwrap(e);
        admission.finished(elapsed, c == null ? null : c instanceof AnalysisException ae ? ae.code() : ErrorCode.INTERNAL, c);
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

    static Throwable unwrap(Throwable t) {
        while ((t instanceof CompletionException || t instanceof java.util.concurrent.ExecutionException) && t.getCause() != null) {
            t = t.getCause();
        }
        return t;
    }

    /** The call was answered before this attempt could run. */
    static final class CancelledAttempt extends RuntimeException {
        CancelledAttempt() {
            super("request already answered", null, false, false);
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
            pooled.fillPoolSoon();
        }

        @Override
        public void workerCrashed(WorkerHandle h, String description, boolean duringStartup) {
            metrics.crashes.increment();
            if (duringStartup) {
                admission.startFailed(new WorkerDiedException(description));
            }
            wakeReadyWaiters();
        }

        @Override
        public void workerRestarted(WorkerHandle h) {
            metrics.restarts.increment();
        }

        @Override
        public void workerRetired(WorkerHandle h, RetireReason reason) {
            if (reason == RetireReason.RECYCLE) {
                metrics.recycles.increment();
            }
        }
    }

    // ================================================================= visibility

    Map<String, Integer> countByState() {
        return PoolStatus.countByState(supervisor);
    }

    @Override
    public boolean isAvailable() {
        if (!started.get() || closed.get() || supervisor.allDown()) {
            return false;
        }
        return !admission.breakerOpen();
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
        WorkerSupervisor s = supervisor;
        List<Map<String, Object>> list = PoolStatus.workerList(s);
        st.put("worker_list", list);
        st.put("breaker", admission.breakerState());
        st.put("in_flight", admission.inFlight());
        GenericObjectPool<WorkerHandle> p = pool;
        if (p != null) {
            st.put("pool", Map.of("idle", p.getNumIdle(), "lent", p.getNumActive(), "waiting", p.getNumWaiters()));
        }
        st.put("max_concurrent", config.limits().maxConcurrent());
        st.put("python", pythonVersions);
        st.put("restarts_total", s == null ? 0 : s.restartsTotal());
        st.put("reloading", reloader != null && reloader.running());
        WorkerLauncher l = launcher;
        if (l != null) {
            st.put("worker_start", l.status()); // mode, fork-server template, spawn fallback and why
        }
        return st;
    }

    // ================================================================= rolling reload

    @Override
    public void markStopping() {
        WorkerSupervisor s = supervisor;
        if (s != null) {
            s.markStopping();
        }
    }

    @Override
    public void reload() {
        reloadAsync();
    }

    /** See {@link RollingReload#start}. */
    public CompletableFuture<Void> reloadAsync() {
        if (!started.get() || closed.get()) {
            return CompletableFuture.failedFuture(new IllegalStateException("pool not running"));
        }
        return reloader.start();
    }
}
