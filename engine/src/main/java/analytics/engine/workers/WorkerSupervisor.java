package analytics.engine.workers;

import analytics.engine.workers.WorkerHandle.RetireReason;
import analytics.engine.workers.WorkerHandle.State;
import analytics.engine.workers.launch.LaunchSpec;
import analytics.engine.workers.launch.LaunchedProcess;
import analytics.engine.workers.launch.WorkerLauncher;
import java.io.IOException;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Spawns, reaps, restarts and kills the worker processes (gunicorn's arbiter: verbs on processes, no request
 * path). Each slot's restart policy is {@link WorkerSlot}; the socket handshake is {@link WorkerConnections};
 * workers that completed it wait in a {@link ReadyQueue} for the pool; {@link MemoryWatchdog} stops busy ones
 * over the memory limit; each worker's lifecycle is {@link WorkerHandle}'s state machine. Each of the
 * {@code workers} slots has at most one "current" process; a retiring process (recycle, reload, timeout kill) may
 * briefly overlap with its replacement.
 */
final class WorkerSupervisor {

    /** A worker that was ready this long (or answered a request/ping) does not count towards a crash loop. */
    static final long HEALTHY_AFTER_NANOS = TimeUnit.SECONDS.toNanos(2);
    private static final Logger log = LoggerFactory.getLogger(WorkerSupervisor.class);
    private static final Logger workerLog = LoggerFactory.getLogger("analytics.worker");
    private static final SecureRandom RANDOM = new SecureRandom();

    /** Events the pool reacts to (metrics, breaker). */
    interface Events {
        void workerReady(WorkerHandle h);

        void workerCrashed(WorkerHandle h, String description, boolean duringStartup);

        void workerRestarted(WorkerHandle h);

        void workerRetired(WorkerHandle h, RetireReason reason);
    }

    private final WorkerPoolConfig config;
    private final WorkerLauncher launcher;
    private final ScheduledExecutorService scheduler;
    private final Events events;
    final WorkerSlot[] slots;
    private final Map<String, WorkerHandle> pendingTokens = new ConcurrentHashMap<>();
    /** Every handle whose process may still be running. */
    final Collection<WorkerHandle> live = ConcurrentHashMap.newKeySet();
    private final ReadyQueue readyQueue;
    /** The worker socket's listener: hello handshake, frames to each worker's channel. */
    final WorkerConnections connections = new WorkerConnections(this);
    private final AtomicLong restartsTotal = new AtomicLong();
    private volatile boolean closing;
    /** Issue 11 (clean stop): set at the engine's first SIGTERM, before the drain; no worker starts after it. */
    private volatile boolean stopping;

    WorkerSupervisor(WorkerPoolConfig config, WorkerLauncher launcher, ScheduledExecutorService scheduler, Events events) {
        this.config = config;
        this.launcher = launcher;
        this.scheduler = scheduler;
        this.events = events;
        this.slots = new WorkerSlot[config.workers()];
        for (int i = 0; i < slots.length; i++) {
            slots[i] = new WorkerSlot(i);
        }
        this.readyQueue = new ReadyQueue(h -> scheduler.execute(() -> retire(h, RetireReason.RELOAD)));
    }

    void startAll() {
        for (WorkerSlot s : slots) {
            scheduler.execute(() -> spawn(s));
        }
    }

    boolean isClosing() {
        return closing;
    }

    /**
     * The engine is stopping (first SIGTERM): requests in flight still finish on their workers, but no worker is
     * started any more — no restart after a crash, no replacement after a recycle or a timeout kill.
     */
    void markStopping() {
        stopping = true;
        for (WorkerSlot s : slots) {
            synchronized (s) {
                s.cancelPendingRestart();
            }
        }
    }

    long restartsTotal() {
        return restartsTotal.get();
    }

    // ---------------------------------------------------------------- spawning

    /**
     * Spawns on a supervisor thread. Workers ask for PR_SET_PDEATHSIG, which Linux ties to the <em>thread</em> that
     * created the child, so every spawn must happen on the long-lived supervisor threads, never on a short-lived
     * one (e.g. the reload thread), or the worker would get SIGTERM when that thread ends.
     */
    CompletableFuture<WorkerHandle> spawnOnSupervisorThread(WorkerSlot slot) {
        return CompletableFuture.supplyAsync(() -> spawn(slot), scheduler);
    }

    /** Starts a new process for the slot; it becomes the slot's current worker. Call on a supervisor thread. */
    private WorkerHandle spawn(WorkerSlot slot) {
        if (closing || stopping) {
            return null;
        }
        long recycleAfter = 0;
        if (config.recycling().maxRequests() > 0) {
            double jitter = 1 + ThreadLocalRandom.current().nextDouble(-0.1, 0.1);
            recycleAfter = Math.max(1, Math.round(config.recycling().maxRequests() * jitter));
        }
        byte[] secret = new byte[24];
        RANDOM.nextBytes(secret);
        WorkerHandle h;
        synchronized (slot) {
            slot.cancelPendingRestart();
            h = new WorkerHandle(slot.id, ++slot.generation, HexFormat.of().formatHex(secret), recycleAfter);
            if (slot.current != null && slot.generation > 1) {
                slot.restarts++;
                restartsTotal.incrementAndGet();
            }
            slot.current = h;
        }
        pendingTokens.put(h.token, h);
        live.add(h);
        LaunchedProcess p;
        try {
            p = launcher.launch(new LaunchSpec(slot.id, h.token, Map.of(), (stream, line) -> {
                workerLog.info("worker[{}] {}", slot.id, line);
                if (stream.equals("stderr")) {
                    slot.remember(line);
                }
            }));
        } catch (IOException | RuntimeException e) {
            pendingTokens.remove(h.token);
            live.remove(h);
            String why = e.getMessage();
            log.error("worker[{}] {}", slot.id, why);
            h.ended(why);
            h.readyFuture.completeExceptionally(new WorkerDiedException(why));
            h.endedFuture.complete(null);
            crashed(slot, h, why, true);
            return h;
        }
        h.process = p;
        h.pid = p.pid();
        h.launched.complete(null); // a hello that came first is handed to the pool now (see ready)
        if (slot.generation > 1) {
            events.workerRestarted(h);
        }
        ScheduledFuture<?> startupTimer = scheduler.schedule(() -> {
            if (h.state() == State.STARTING) {
                String why = "did not complete its handshake within " + config.timeouts().startup().toMillis() + " ms";
                log.error("worker[{}] pid {} {}", slot.id, h.pid, why);
                h.noteEndCause(why);
                retire(h, RetireReason.START_FAILED);
                processEnded(h, why);
            }
        }, config.timeouts().startup().toMillis(), TimeUnit.MILLISECONDS);
        h.readyFuture.whenComplete((v, e) -> startupTimer.cancel(false));
        p.exited().thenAccept(d -> processEnded(h, d));
        return h;
    }

    // ---------------------------------------------------------------- handshake outcomes (from WorkerConnections)

    /** The worker spawned with this one-time token, or null (unknown, or its hello came already). */
    WorkerHandle claimToken(String token) {
        return pendingTokens.remove(token);
    }

    /** {@code h} completed its hello: it is queued for the pool. */
    void ready(WorkerHandle h) {
        slots[h.slot].down = false;
        log.info("worker[{}] pid {} ready in {} ms ({} algorithms)", h.slot, h.pid,
                (h.readyNanos() - h.spawnedNanos) / 1_000_000, h.algorithms.size());
        h.readyFuture.complete(null);
        // A forked worker can say hello before its launcher returned the process: the pool's usable() test needs
        // the process, so the worker is offered once it is known (else the pool would drop it and never lend it).
        h.launched.thenRun(() -> {
            readyQueue.offer(h);
            events.workerReady(h);
        });
    }

    // ---------------------------------------------------------------- ends, crashes, restarts

    /**
     * A worker found broken whose process or connection is already gone: make sure its end is processed (the
     * channel-close and process-exit callbacks do it anyway; this covers a process that lost its connection but
     * lingers).
     */
    void ensureEnding(WorkerHandle h) {
        LaunchedProcess p = h.process;
        if (p == null) {
            return;
        }
        p.exited().completeOnTimeout("lost its connection", 500, TimeUnit.MILLISECONDS)
                .thenAccept(d -> processEnded(h, d));
    }

    /** The process exited or its connection is gone. Runs the end logic once per handle. */
    void processEnded(WorkerHandle h, String description) {
        if (h.ended(description) == null) {
            return; // its end is being processed already
        }
        String what = h.endDescription();
        boolean unexpected = !h.isRetiring();
        pendingTokens.remove(h.token);
        readyQueue.remove(h);
        h.failPending(new WorkerDiedException("Python worker " + h.slot + " (pid " + h.pid + ") " + what, h.requestRetryable()));
        h.readyFuture.completeExceptionally(new WorkerDiedException("worker " + h.slot + " " + what));
        WorkerChannel c = h.channel;
        if (c != null) {
            c.close();
        }
        LaunchedProcess p = h.process;
        if (p != null && p.isAlive()) {
            kill(h, false);
        }
        if (p != null) {
            p.exited().thenRun(() -> {
                live.remove(h);
                h.endedFuture.complete(null);
            });
        } else {
            live.remove(h);
            h.endedFuture.complete(null);
        }
        if (unexpected && !closing) {
            boolean startup = h.readyNanos() == 0;
            log.warn("worker[{}] pid {} {}{}", h.slot, h.pid, what, startup ? " during start-up" : "");
            crashed(slots[h.slot], h, what, startup);
        }
    }

    private void crashed(WorkerSlot slot, WorkerHandle h, String what, boolean startup) {
        events.workerCrashed(h, what, startup);
        long delayMs;
        synchronized (slot) {
            if (slot.current != h || closing || stopping || !h.claimReplacement()) {
                return; // already replaced, or the engine is stopping: no new worker
            }
            delayMs = slot.failed(h, what, startup, config);
            if (delayMs < 0) {
                log.error("worker[{}] is in a crash loop ({} consecutive failures); leaving it down until a reload: {}",
                        slot.id, slot.consecutiveFailures, slot.lastFailure);
                return;
            }
            slot.pendingRestart = scheduler.schedule(() -> spawn(slot), delayMs, TimeUnit.MILLISECONDS);
        }
        log.info("worker[{}] restarting in {} ms (consecutive failures: {})", slot.id, delayMs, slot.consecutiveFailures);
    }

    /** A request or ping succeeded: the slot is healthy. */
    void markHealthy(WorkerHandle h) {
        WorkerSlot s = slots[h.slot];
        synchronized (s) {
            if (s.current == h) {
                s.consecutiveFailures = 0;
                s.lastFailure = null;
            }
        }
    }

    /**
     * Takes a worker out of service (idempotent). Graceful reasons send {@code shutdown} first; all follow with
     * SIGTERM → grace → SIGKILL while the process lingers. Reasons with {@code replaceNow} spawn the slot's
     * replacement at once.
     */
    void retire(WorkerHandle h, RetireReason reason) {
        if (!h.beginRetire(reason)) {
            return;
        }
        readyQueue.remove(h);
        events.workerRetired(h, reason);
        if (reason == RetireReason.START_FAILED) {
            kill(h, false);
            crashed(slots[h.slot], h, h.endDescription() == null ? "failed to start" : h.endDescription(), true);
            return;
        }
        if (reason.replaceNow && !closing && !stopping) {
            WorkerSlot s = slots[h.slot];
            boolean replace;
            synchronized (s) {
                replace = s.current == h && h.claimReplacement();
            }
            if (replace) {
                scheduler.execute(() -> spawn(s));
            }
        }
        kill(h, reason.graceful);
    }

    /** shutdown message (graceful) → grace → SIGTERM → grace → SIGKILL, each step only if still alive. */
    CompletableFuture<Void> kill(WorkerHandle h, boolean graceful) {
        LaunchedProcess p = h.process;
        if (p == null) {
            return CompletableFuture.completedFuture(null);
        }
        long grace = config.timeouts().killGrace().toMillis();
        Runnable sigkill = () -> {
            if (p.isAlive()) {
                log.warn("worker[{}] pid {} still alive {} ms after SIGTERM: SIGKILL", h.slot, h.pid, grace);
                p.kill();
            }
        };
        Runnable sigterm = () -> {
            if (p.isAlive()) {
                p.terminate();
                scheduler.schedule(sigkill, grace, TimeUnit.MILLISECONDS);
            }
        };
        if (graceful && h.connected()) {
            h.sendShutdown();
            scheduler.schedule(sigterm, grace, TimeUnit.MILLISECONDS);
        } else {
            // A worker treats SIGTERM as "finish the current request, then wait for shutdown" (clean stop under
            // systemd), so a worker that must go now (hung, over its memory limit, no handshake) gets SIGKILL.
            p.kill();
        }
        return p.exited().thenApply(x -> null);
    }

    /** See {@link MemoryWatchdog}. */
    void startMemoryWatchdog() {
        MemoryWatchdog.start(config.recycling().maxRssBytes(), live, scheduler, h -> retire(h, RetireReason.BROKEN));
    }

    // ---------------------------------------------------------------- ready queue (feeds the pool's factory)

    boolean removeReady(WorkerHandle h) {
        return readyQueue.remove(h);
    }

    boolean hasQueuedReady() {
        return !readyQueue.isEmpty();
    }

    /** The next queued worker that completed its hello and is still usable, or null; never waits. */
    WorkerHandle pollReady() {
        return readyQueue.poll();
    }

    boolean allDown() {
        for (WorkerSlot s : slots) {
            if (!s.down) {
                return false;
            }
        }
        return true;
    }

    /** A reload's replacement failed to start: the old worker (still serving) becomes current again. */
    void revert(WorkerSlot s, WorkerHandle old, WorkerHandle failed) {
        synchronized (s) {
            s.cancelPendingRestart();
            failed.handBackTo(old);
            s.current = old;
        }
        if (!failed.hasEnded()) {
            retire(failed, RetireReason.SHUTDOWN);
        }
    }

    /** Clears crash-loop state so a reload can try again. */
    void resetSlot(WorkerSlot s) {
        synchronized (s) {
            s.down = false;
            s.consecutiveFailures = 0;
            s.cancelPendingRestart();
        }
    }

    // ---------------------------------------------------------------- shutdown

    /** Stops every worker: shutdown message, then SIGTERM/SIGKILL. Waits up to 2·grace + 1 s. */
    void closeAll() {
        closing = true;
        for (WorkerSlot s : slots) {
            synchronized (s) {
                if (s.pendingRestart != null) {
                    s.pendingRestart.cancel(false);
                }
            }
        }
        List<CompletableFuture<Void>> exits = new ArrayList<>();
        for (WorkerHandle h : List.copyOf(live)) {
            h.beginRetire(RetireReason.SHUTDOWN); // its end is expected: no crash accounting
            h.failPending(new ShutdownException());
            exits.add(kill(h, true));
        }
        long budget = 2 * config.timeouts().killGrace().toMillis() + 1000;
        try {
            CompletableFuture.allOf(exits.toArray(CompletableFuture[]::new)).get(budget, TimeUnit.MILLISECONDS);
        } catch (Exception e) {
            // last resort, synchronously
            for (WorkerHandle h : List.copyOf(live)) {
                LaunchedProcess p = h.process;
                if (p != null && p.isAlive()) {
                    p.kill();
                }
            }
        }
    }

    /** Synchronous SIGKILL of everything, for the JVM shutdown hook when close() was never called. */
    void killAllNow() {
        closing = true;
        for (WorkerHandle h : List.copyOf(live)) {
            LaunchedProcess p = h.process;
            if (p != null && p.isAlive()) {
                h.sendShutdown();
                p.terminate();
            }
        }
        long until = System.nanoTime() + config.timeouts().killGrace().toNanos();
        for (WorkerHandle h : List.copyOf(live)) {
            LaunchedProcess p = h.process;
            if (p == null) {
                continue;
            }
            try {
                long left = until - System.nanoTime();
                if (left <= 0 || !awaitExit(p, left)) {
                    p.kill();
                }
            } catch (InterruptedException e) {
                p.kill();
                Thread.currentThread().interrupt();
            }
        }
    }

    private static boolean awaitExit(LaunchedProcess p, long nanos) throws InterruptedException {
        try {
            p.exited().get(nanos, TimeUnit.NANOSECONDS);
            return true;
        } catch (java.util.concurrent.TimeoutException e) {
            return false;
        } catch (java.util.concurrent.ExecutionException e) {
            return !p.isAlive();
        }
    }

    /** The engine is shutting down. */
    static final class ShutdownException extends RuntimeException {
        ShutdownException() {
            super("the analytics engine is shutting down", null, false, false);
        }
    }
}
