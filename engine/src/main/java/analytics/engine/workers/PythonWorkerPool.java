package analytics.engine.workers;

import analytics.engine.api.PythonBackend;
import analytics.engine.api.AnalysisException;
import analytics.engine.api.AnalysisInput;
import analytics.engine.proto.ErrorCode;
import analytics.engine.workers.WorkerHandle.RetireReason;
import analytics.engine.workers.WorkerSupervisor.Slot;
import analytics.engine.workers.launch.ForkServerLauncher;
import analytics.engine.workers.launch.SpawnLauncher;
import analytics.engine.workers.launch.WorkerLauncher;
import analytics.engine.workers.transport.DataFile;
import analytics.engine.workers.transport.WorkerSocketServer;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;
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
 * from the supervisor's ready queue, without waiting. The pool's capacity ({@code maxTotal}) follows the workers
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
    private final Counter restarts;
    private final Counter timeouts;
    private final Counter recycles;
    private final Counter crashes;
    private final Counter retries;
    private final Timer roundTrip;
    private final Counter sharedMemoryRequests;
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
    /** Guards the pool's capacity (maxTotal): see {@link #grow}. */
    private final Object capacityLock = new Object();

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
        this.admission = new Admission(config, meters, PythonWorkerPool::unwrap);
        this.restarts = Counter.builder("analytics.python.worker.restarts").description("worker processes started to replace another").register(meters);
        this.timeouts = Counter.builder("analytics.python.timeouts").description("requests answered TIMEOUT at their deadline").register(meters);
        this.recycles = Counter.builder("analytics.python.worker.recycles").description("workers recycled (max requests / RSS)").register(meters);
        this.crashes = Counter.builder("analytics.python.worker.crashes").description("unexpected worker exits").register(meters);
        this.retries = Counter.builder("analytics.python.retries").description("requests retried after their worker died").register(meters);
        this.sharedMemoryRequests = Counter.builder("analytics.python.shm.requests")
                .description("requests whose arrays went to the worker through a runtime-dir file (data_file)").register(meters);
        this.roundTrip = Timer.builder("analytics.python.roundtrip").description("Python request round trip").publishPercentileHistogram().register(meters);
        for (String st : List.of("ready", "busy", "starting", "down")) {
            Gauge.builder("analytics.python.workers", this, p -> p.countByState().getOrDefault(st, 0))
                    .tag("state", st).description("Python workers by state").register(meters);
        }
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
            if (config.testMode()) {
                workerArgs.add("--enable-test-algorithms");
            }
            // ---- issue 11: choose how workers start (fork-server by default, spawn as the fallback/option)
            launcher = switch (config.startMode()) {
                case FORK_SERVER -> new ForkServerLauncher(config.python(), sock, workerArgs, config.workingDir(),
                        config.extraEnv(), config.startupTimeout());
                case SPAWN -> new SpawnLauncher(config.python(), sock, workerArgs, config.workingDir(), config.extraEnv());
                case SPAWN_PRELOAD -> {
                    List<String> preload = new ArrayList<>(workerArgs);
                    preload.add("--preload");
                    yield new SpawnLauncher(config.python(), sock, preload, config.workingDir(), config.extraEnv());
                }
            };
            supervisor = new WorkerSupervisor(config, launcher, scheduler, new Events());
            server = new WorkerSocketServer(sock, config.maxFrameBytes(), config.startupTimeout(), supervisor);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot set up the worker runtime directory: " + e.getMessage(), e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while binding the worker socket", e);
        }
        GenericObjectPoolConfig<WorkerHandle> pc = new GenericObjectPoolConfig<>();
        pc.setMaxTotal(0); // grows as workers complete their hello: see grow()
        pc.setMaxIdle(config.workers());
        pc.setMinIdle(0);
        pc.setLifo(false);
        pc.setBlockWhenExhausted(true);
        pc.setMaxWait(Duration.ofSeconds(1)); // only addObject uses it, waiting for a borrower's create to finish
        pc.setTestOnCreate(true);
        pc.setTestOnBorrow(true);
        pc.setTestOnReturn(true);
        pc.setTestWhileIdle(true);
        pc.setTimeBetweenEvictionRuns(config.pingInterval());
        pc.setNumTestsPerEvictionRun(config.workers() + 1);
        pc.setEvictionPolicy((cfg, underTest, idleCount) -> false); // never evict for idleness; validation pings
        pc.setJmxEnabled(false);
        pool = new GenericObjectPool<>(new Factory(), pc);
        reloader = new RollingReload(config, supervisor, launcher, admission, pool, closed);
        workerCall = new WorkerCall(runtimeDir, shmThresholdBytes, sharedMemoryRequests, completions,
                this::giveBack, this::invalidate, supervisor::markHealthy,
                h -> h.inService() && !h.needsRecycle(config.maxRssBytes()));
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
    public CompletableFuture<PythonResult> submit(AnalysisInput input, long timeoutMs) {
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
        Call call = new Call(input, timeoutMs);
        call.result.whenComplete((r, e) -> finish(call, r, e));
        call.deadlineTask = deadlines.schedule(call::onDeadline, timeoutMs, TimeUnit.MILLISECONDS);
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
        volatile ScheduledFuture<?> deadlineTask;
        volatile boolean everSent;

        Call(AnalysisInput input, long timeoutMs) {
            this.input = input;
            this.timeoutMs = timeoutMs;
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
                timeouts.increment();
                WorkerHandle w = onWorker.getAndSet(null);
                if (w != null) {
                    log.warn("request {} ({}) passed its {} ms deadline on worker[{}] pid {}: replacing the worker",
                            id, input.algorithm(), timeoutMs, w.slot, w.pid);
                    invalidate(w, RetireReason.TIMEOUT);
                }
            }
        }
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
        long cap = config.borrowWait().toNanos(); // 0 = no cap: up to the deadline
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
            budget = call.attempts.get() > 1 ? Math.max(cap, config.startupTimeout().toNanos()) : cap;
            hardEnd = Math.min(call.deadlineNanos, start + Math.max(budget, config.startupTimeout().toNanos()));
        }
        long slice = TimeUnit.MILLISECONDS.toNanos(200);
        long overloadWaited = 0;
        while (!closed.get()) {
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
        long elapsed = System.nanoTime() - call.startNanos;
        roundTrip.record(elapsed, TimeUnit.NANOSECONDS);
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

    // ================================================================= pool factory

    private final class Factory extends BasePooledObjectFactory<WorkerHandle> {
        @Override
        public WorkerHandle create() {
            // Never waits: the pool only creates within the capacity that fillPool granted for a worker that
            // completed its hello, so there is one queued (unless it died or reload took it meanwhile).
            WorkerHandle h = supervisor.pollReady();
            if (h == null) {
                shrink(); // the grant it was made for is void
                throw new NoSuchElementException("no Python worker ready");
            }
            return h;
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
            shrink();
            if (supervisor.isClosing() || h.ended.get()) {
                fillPoolSoon();
                return;
            }
            RetireReason reason = h.retireReason;
            if (reason == RetireReason.BROKEN && h.retiring.get() == false
                    && (!h.processAlive() || !h.connected())) {
                // It is dying by itself (crash, kill -9, lost connection): the supervisor's end-of-process path
                // restarts it with crash accounting (backoff, crash-loop limit). Make sure that path runs.
                supervisor.ensureEnding(h);
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
        while (p != null && !closed.get() && supervisor.hasQueuedReady() && grow()) {
            try {
                p.addObject(); // a borrower waiting on the idle deque gets it at once
            } catch (Exception e) {
                return; // it died or reload took it meanwhile (create gave the capacity back)
            }
        }
    }

    /**
     * The pool's capacity ({@code maxTotal}) is the number of workers it holds plus those granted and about to be
     * added: a borrower therefore never asks the factory for a worker that is still starting; it waits on the
     * idle deque ({@code borrowObject(Duration)}) until one is returned or added. Grown here for each worker that
     * completed its hello (at most the worker count); shrunk when one is destroyed or a grant finds no worker.
     */
    private boolean grow() {
        synchronized (capacityLock) {
            int max = pool.getMaxTotal();
            if (max >= config.workers()) {
                return false;
            }
            pool.setMaxTotal(max + 1);
            return true;
        }
    }

    private void shrink() {
        synchronized (capacityLock) {
            pool.setMaxTotal(Math.max(0, pool.getMaxTotal() - 1));
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
                admission.startFailed(new WorkerDiedException(description));
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
        st.put("max_concurrent", config.maxConcurrent());
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
