package analytics.engine.workers;

import analytics.engine.api.PythonBackend;
import analytics.engine.api.AnalysisException;
import analytics.engine.api.AnalysisInput;
import analytics.engine.api.Cancellation;
import analytics.engine.proto.ErrorCode;
import analytics.engine.workers.WorkerHandle.RetireReason;
import analytics.engine.workers.launch.WorkerLauncher;
import analytics.engine.workers.transport.WorkerSocketServer;
import io.micrometer.core.instrument.MeterRegistry;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
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
 * {@link Admission} (rate limiter, bulkhead, circuit breaker, retry once when the worker died) → {@link WorkerWait}
 * (borrow, waiting up to the request's deadline, or {@code borrowWait} when set) → {@link WorkerCall} (frame
 * written, response). The request is a {@link PythonCall}: a scheduled task answers it {@code TIMEOUT} exactly at
 * the deadline, and a deadline or cancellation stops its computation on the worker. Around it: the process side
 * is {@link WorkerSupervisor}'s, supervisor events land in {@link PoolEvents}, the runtime directory and launcher
 * in {@link WorkerRuntime}.
 */
public final class PythonWorkerPool implements PythonBackend {

    private static final Logger log = LoggerFactory.getLogger(PythonWorkerPool.class);

    private final WorkerPoolConfig config;
    private final MeterRegistry meters;
    private final PoolThreads threads;
    private final Admission admission;
    private final PoolMetrics metrics;
    /** Arrays of at least this many bytes go to workers that support it through a file (data_file); 0 = never. */
    private final long shmThresholdBytes;
    private final AtomicBoolean started = new AtomicBoolean();
    private final AtomicBoolean closed = new AtomicBoolean();
    private final PoolEvents events;

    private Path runtimeDir;
    private WorkerRuntime runtime;
    private WorkerSocketServer server;
    /** The event loops the worker connections are served on (null: the socket server's own): see {@link #useEventLoops}. */
    private io.netty.channel.EventLoopGroup sharedLoops;
    private WorkerSupervisor supervisor;
    private WorkerLauncher launcher;
    private GenericObjectPool<WorkerHandle> pool;
    private WorkerCall workerCall;
    private WorkerWait wait;
    private PythonCall.Stops callStops;
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
        this.threads = new PoolThreads(config.limits().maxConcurrent());
        this.admission = new Admission(config, meters, PythonWorkerPool::unwrap);
        this.metrics = new PoolMetrics(meters, this);
        this.events = new PoolEvents(metrics, admission, () -> pooled.fillPoolSoon());
    }

    long workersRssBytes() {
        WorkerSupervisor s = supervisor;
        return s == null ? 0 : s.live.stream().mapToLong(h -> Math.max(0, h.rssBytes)).sum();
    }

    // ================================================================= lifecycle

    /**
     * Serves the worker connections on {@code loops} (an epoll group, normally the gRPC server's; its owner shuts it
     * down after {@link #close()}) instead of the worker socket's own thread: a cheap request handled on a gRPC
     * network thread then usually finds an idle worker on that same loop (see {@code WorkerWait.borrowNowNearby}).
     * Before {@link #start()}. Returns this pool.
     */
    public synchronized PythonWorkerPool useEventLoops(io.netty.channel.EventLoopGroup loops) {
        if (started.get()) {
            throw new IllegalStateException("useEventLoops must come before start()");
        }
        sharedLoops = loops;
        threads.deadlines.useLoops(loops);
        return this;
    }

    /** Creates the runtime dir, listens on workers.sock and spawns all workers (does not wait for them). */
    public synchronized void start() {
        if (closed.get()) {
            throw new IllegalStateException("pool is closed");
        }
        if (!started.compareAndSet(false, true)) {
            return;
        }
        try {
            runtime = WorkerRuntime.prepare(config);
            runtimeDir = runtime.dir();
            launcher = runtime.newLauncher(config);
            supervisor = new WorkerSupervisor(config, launcher, threads.scheduler, events);
            server = new WorkerSocketServer(runtime.socket(), config.maxFrameBytes(), config.timeouts().startup(),
                    supervisor.connections, sharedLoops);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot set up the worker runtime directory: " + e.getMessage(), e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while binding the worker socket", e);
        }
        pooled = new PooledWorkers(config, supervisor, threads.scheduler, closed);
        pool = pooled.pool();
        reloader = new RollingReload(config, supervisor, launcher, admission, pool, closed);
        wait = new WorkerWait(config, pool, supervisor, closed);
        callStops = new PythonCall.Stops(metrics, threads.deadlines.executor(), () -> cancelStopWaitMs, this::invalidate,
                this::countByState, wait::leave);
        workerCall = new WorkerCall(runtimeDir, shmThresholdBytes, metrics.sharedMemoryRequests, threads.completions,
                this::giveBack, this::invalidate, supervisor::markHealthy,
                h -> h.inService() && !h.needsRecycle(config.recycling().maxRssBytes()));
        shutdownHook = new Thread(this::closeFromHook, "python-workers-shutdown");
        Runtime.getRuntime().addShutdownHook(shutdownHook);
        supervisor.startAll();
        supervisor.startMemoryWatchdog();
        log.info("Python worker pool: {} workers, python {}, socket {}", config.workers(), config.python(),
                runtime.socket());
    }

    /**
     * Waits until at least one ({@code all=false}) or every ({@code all=true}) worker is ready. Returns false on
     * timeout, or at once when every slot is down (crash loop).
     */
    public boolean awaitReady(Duration timeout, boolean all) throws InterruptedException {
        return events.awaitReady(timeout, () -> {
            Map<String, Integer> c = countByState();
            int ready = c.getOrDefault("ready", 0) + c.getOrDefault("busy", 0);
            return all ? ready >= config.workers() : ready >= 1;
        }, () -> supervisor == null || supervisor.allDown() || closed.get());
    }

    /** {@link #awaitReady(Duration, boolean)} for at least one worker. */
    public boolean awaitReady(Duration timeout) throws InterruptedException {
        return awaitReady(timeout, false);
    }

    /**
     * One pass of the idle-worker check now, as the pool's evictor runs it every ping interval (a ping to each idle
     * worker, which also reads its RSS); the number of idle workers checked. Start-up runs it once
     * ({@code PythonWiring.whenReady}).
     */
    public int checkIdleWorkersNow() {
        if (pooled == null || closed.get()) {
            return 0;
        }
        try {
            return pooled.checkIdleNow();
        } catch (Exception e) {
            log.warn("idle-worker check failed: {}", unwrap(e).toString());
            return 0;
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
        events.wake();
        threads.close();
        if (runtime != null) {
            runtime.cleanUp();
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
        AnalysisException refused = admission.admit(PoolStatus.downSuffix(supervisor));
        if (refused != null) {
            return CompletableFuture.failedFuture(refused);
        }
        if (supervisor.allDown()) {
            AnalysisException e = new AnalysisException(ErrorCode.UNAVAILABLE, "all " + config.workers()
                    + " Python workers are down after repeated start-up failures" + PoolStatus.downSuffix(supervisor)
                    + "; fix the cause and reload the engine");
            admission.refused(e);
            return CompletableFuture.failedFuture(e);
        }
        PythonCall call = new PythonCall(input, timeoutMs, cancel,
                listener == null ? PythonBackend.Listener.NONE : listener, callStops);
        call.result.whenComplete((r, e) -> finish(call, r, e));
        call.deadlineTask = threads.deadlines.schedule(call::onDeadline, timeoutMs);
        call.unlisten = cancel.onCancel(call::onCancel); // runs at once if it was cancelled meanwhile
        if (call.result.isDone()) {
            call.unlisten.run(); // answered before the listener was in place (finish saw none)
        }
        admission.retry().executeCompletionStage(threads.scheduler, () -> attempt(call)).whenComplete((r, e) -> {
            if (e == null) {
                call.result.complete(r);
            } else {
                call.result.completeExceptionally(call.failure(unwrap(e)));
            }
        });
        return call.result;
    }

    private static CompletableFuture<PythonResult> failed(ErrorCode code, String message) {
        return CompletableFuture.failedFuture(new AnalysisException(code, message));
    }

    private CompletionStage<PythonResult> attempt(PythonCall call) {
        CompletableFuture<PythonResult> out = new CompletableFuture<>();
        if (call.result.isDone()) {
            out.completeExceptionally(new PythonCall.CancelledAttempt());
            return out;
        }
        if (call.attempts.incrementAndGet() > 1) {
            metrics.retries.increment();
            log.info("request {} ({}): retrying on another worker", call.id, call.input.algorithm());
        }
        try {
            WorkerHandle idle = pool.getNumIdle() > 0 ? wait.borrowNowNearby() : null;
            if (idle != null) {
                runAttempt(call, out, idle); // fast path: a worker is free, no thread hop (nothing here blocks)
            } else {
                threads.borrowers.execute(() -> runAttempt(call, out));
            }
        } catch (RuntimeException e) {
            out.completeExceptionally(new AnalysisException(ErrorCode.UNAVAILABLE, "the Python worker pool is shut down"));
        }
        return out;
    }

    private void runAttempt(PythonCall call, CompletableFuture<PythonResult> out) {
        WorkerHandle h;
        try {
            h = wait.borrow(call);
        } catch (AnalysisException e) {
            out.completeExceptionally(e);
            return;
        }
        runAttempt(call, out, h);
    }

    private void runAttempt(PythonCall call, CompletableFuture<PythonResult> out, WorkerHandle h) {
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

    private void giveBack(WorkerHandle h) {
        try {
            pool.returnObject(h);
        } catch (Exception e) {
            log.debug("returning worker[{}] to a closed pool: {}", h.slot, e.toString());
        }
    }

    private void invalidate(WorkerHandle h, RetireReason reason) {
        h.noteRetireReason(reason);
        try {
            pool.invalidateObject(h, DestroyMode.NORMAL);
        } catch (Exception e) {
            // invalidateObject destroys first, then may try to top the idle set up (ensureIdle → create), which
            // fails without a queued worker: only act if the destroy itself did not happen
            if (!h.isDestroyed()) {
                supervisor.retire(h, reason);
            }
        }
    }

    private void finish(PythonCall call, PythonResult r, Throwable e) {
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

    static Throwable unwrap(Throwable t) {
        while ((t instanceof CompletionException || t instanceof java.util.concurrent.ExecutionException) && t.getCause() != null) {
            t = t.getCause();
        }
        return t;
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
        return events.algorithmInfo().keySet();
    }

    /** The per-algorithm descriptions from the workers' hello (description, required, optional, input). */
    public Map<String, Object> algorithmInfo() {
        return events.algorithmInfo();
    }

    @Override
    public Map<String, Object> status() {
        RollingReload r = reloader;
        return PoolStatus.snapshot(isAvailable(), supervisor, admission, pool, config.limits().maxConcurrent(),
                events.pythonVersions(), r != null && r.running(), launcher);
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
