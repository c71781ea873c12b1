package analytics.engine.workers;

import analytics.engine.workers.transport.WorkerMessage;
import analytics.engine.workers.transport.WorkerMessage.Hello;
import analytics.engine.workers.WorkerHandle.RetireReason;
import analytics.engine.workers.WorkerHandle.State;
import analytics.engine.workers.launch.LaunchSpec;
import analytics.engine.workers.launch.LaunchedProcess;
import analytics.engine.workers.launch.WorkerLauncher;
import analytics.engine.workers.transport.WorkerSocketServer;
import analytics.engine.workers.transport.WorkerSocketServer.Connection;
import java.io.IOException;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Deque;
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
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.BooleanSupplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Spawns, watches, restarts and stops the worker processes. Each of the {@code workers} slots has at most one
 * "current" process; a retiring process (recycle, reload, timeout kill) may briefly overlap with its
 * replacement. Workers that completed their hello are queued for the pool ({@link #pollReady}).
 */
final class WorkerSupervisor implements WorkerSocketServer.Listener {

    static final int PROTOCOL_VERSION = 1;
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

    final class Slot {
        final int id;
        volatile WorkerHandle current;
        long generation;
        int consecutiveFailures;
        int restarts;
        volatile boolean down;
        volatile String lastFailure;
        ScheduledFuture<?> pendingRestart;
        final Deque<String> recentOutput = new ArrayDeque<>();

        Slot(int id) {
            this.id = id;
        }

        synchronized void remember(String line) {
            if (recentOutput.size() >= 8) {
                recentOutput.removeFirst();
            }
            recentOutput.addLast(line.length() > 300 ? line.substring(0, 300) + "…" : line);
        }

        synchronized String lastOutputLine() {
            return recentOutput.isEmpty() ? null : recentOutput.peekLast();
        }
    }

    private final WorkerPoolConfig config;
    private final WorkerLauncher launcher;
    private final ScheduledExecutorService scheduler;
    private final Events events;
    final Slot[] slots;
    private final Map<String, WorkerHandle> pendingTokens = new ConcurrentHashMap<>();
    /** Every handle whose process may still be running. */
    final Collection<WorkerHandle> live = ConcurrentHashMap.newKeySet();
    private final Deque<WorkerHandle> readyQueue = new ArrayDeque<>();
    private final ReentrantLock lock = new ReentrantLock();
    private final AtomicLong restartsTotal = new AtomicLong();
    private volatile boolean closing;
    /** Issue 11 (clean stop): set at the engine's first SIGTERM, before the drain; no worker starts after it. */
    private volatile boolean stopping;

    WorkerSupervisor(WorkerPoolConfig config, WorkerLauncher launcher, ScheduledExecutorService scheduler, Events events) {
        this.config = config;
        this.launcher = launcher;
        this.scheduler = scheduler;
        this.events = events;
        this.slots = new Slot[config.workers()];
        for (int i = 0; i < slots.length; i++) {
            slots[i] = new Slot(i);
        }
    }

    void startAll() {
        for (Slot s : slots) {
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
        for (Slot s : slots) {
            synchronized (s) {
                if (s.pendingRestart != null) {
                    s.pendingRestart.cancel(false);
                    s.pendingRestart = null;
                }
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
    CompletableFuture<WorkerHandle> spawnOnSupervisorThread(Slot slot) {
        return CompletableFuture.supplyAsync(() -> spawn(slot), scheduler);
    }

    /** Starts a new process for the slot; it becomes the slot's current worker. Call on a supervisor thread. */
    private WorkerHandle spawn(Slot slot) {
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
            if (slot.pendingRestart != null) {
                slot.pendingRestart.cancel(false);
                slot.pendingRestart = null;
            }
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
            h.endDescription = why;
            h.ended.set(true);
            h.state = State.DEAD;
            h.readyFuture.completeExceptionally(new WorkerDiedException(why));
            h.endedFuture.complete(null);
            crashed(slot, h, why, true);
            return h;
        }
        h.process = p;
        h.pid = p.pid();
        if (slot.generation > 1) {
            events.workerRestarted(h);
        }
        ScheduledFuture<?> startupTimer = scheduler.schedule(() -> {
            if (h.state == State.STARTING && !h.ended.get()) {
                String why = "did not complete its handshake within " + config.timeouts().startup().toMillis() + " ms";
                log.error("worker[{}] pid {} {}", slot.id, h.pid, why);
                h.endDescription = why;
                retire(h, RetireReason.START_FAILED);
                processEnded(h, why);
            }
        }, config.timeouts().startup().toMillis(), TimeUnit.MILLISECONDS);
        h.readyFuture.whenComplete((v, e) -> startupTimer.cancel(false));
        p.exited().thenAccept(d -> processEnded(h, d));
        return h;
    }

    // ---------------------------------------------------------------- socket events

    @Override
    public void onMessage(Connection conn, Map<String, Object> frame) {
        WorkerMessage msg = WorkerMessage.of(frame);
        WorkerHandle h = (WorkerHandle) conn.attachment;
        if (h == null) {
            onHello(conn, msg);
            return;
        }
        // after the hello, every frame answers something the worker's channel sent: it matches them
        String violation = h.channel.deliver(msg);
        if (violation != null) {
            onProtocolError(conn, violation);
            conn.close();
        }
    }

    private void onHello(Connection conn, WorkerMessage msg) {
        WorkerHandle h = msg instanceof Hello hello && hello.token() != null ? pendingTokens.remove(hello.token()) : null;
        if (h == null) {
            log.warn("dropping a worker connection whose first frame is not a hello with a token we issued ({})",
                    msg.getClass().getSimpleName());
            conn.close();
            return;
        }
        Hello hello = (Hello) msg;
        Slot slot = slots[h.slot];
        if (hello.protocol() != PROTOCOL_VERSION) {
            String why = "speaks worker protocol " + (hello.protocol() < 0 ? "null" : hello.protocol())
                    + ", the engine speaks " + PROTOCOL_VERSION;
            log.error("worker[{}] pid {} {}; stopping it", h.slot, h.pid, why);
            conn.close();
            h.endDescription = why;
            retire(h, RetireReason.START_FAILED);
            return;
        }
        if (hello.pid() >= 0 && h.pid <= 0) {
            // A forked worker can say hello before its launcher has learnt its pid from the template.
            h.pid = hello.pid();
        } else if (hello.pid() >= 0 && hello.pid() != h.pid) {
            log.warn("worker[{}] hello reports pid {} but we spawned pid {}", h.slot, hello.pid(), h.pid);
        }
        h.channel = new WorkerChannel(h.name(), conn);
        conn.attachment = h;
        h.versions = hello.versions();
        h.algorithms = hello.algorithms();
        h.features = hello.features();
        if (h.ended.get() || h.retiring.get() || closing) {
            conn.close();
            return;
        }
        h.readyNanos = System.nanoTime();
        h.state = State.READY;
        slot.down = false;
        log.info("worker[{}] pid {} ready in {} ms ({} algorithms)", h.slot, h.pid,
                (h.readyNanos - h.spawnedNanos) / 1_000_000, h.algorithms.size());
        h.readyFuture.complete(null);
        offerReady(h);
        events.workerReady(h);
    }

    @Override
    public void onClosed(Connection conn) {
        WorkerHandle h = (WorkerHandle) conn.attachment;
        if (h == null) {
            return;
        }
        // Prefer the process's own exit status in the description: give it a moment to be reaped.
        LaunchedProcess p = h.process;
        p.exited().completeOnTimeout("closed its connection", 200, TimeUnit.MILLISECONDS)
                .thenAccept(d -> processEnded(h, d));
    }

    @Override
    public void onProtocolError(Connection conn, String description) {
        WorkerHandle h = (WorkerHandle) conn.attachment;
        log.error("protocol error on {}: {}; closing the connection",
                h == null ? "an unidentified worker connection" : "worker[" + h.slot + "] pid " + h.pid, description);
        if (h != null && h.endDescription == null) {
            h.endDescription = "protocol error: " + description;
        }
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
    private void processEnded(WorkerHandle h, String description) {
        if (!h.ended.compareAndSet(false, true)) {
            return;
        }
        String what = h.endDescription != null ? h.endDescription : description;
        h.endDescription = what;
        boolean unexpected = !h.retiring.get();
        h.state = State.DEAD;
        h.outOfService.complete(null);
        pendingTokens.remove(h.token);
        removeReady(h);
        h.failPending(new WorkerDiedException("Python worker " + h.slot + " (pid " + h.pid + ") " + what, !h.requestCaused));
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
            boolean startup = h.readyNanos == 0;
            log.warn("worker[{}] pid {} {}{}", h.slot, h.pid, what, startup ? " during start-up" : "");
            crashed(slots[h.slot], h, what, startup);
        }
    }

    private void crashed(Slot slot, WorkerHandle h, String what, boolean startup) {
        events.workerCrashed(h, what, startup);
        long delayMs;
        synchronized (slot) {
            if (slot.current != h || closing || stopping || !h.replaced.compareAndSet(false, true)) {
                return; // already replaced, or the engine is stopping: no new worker
            }
            if (h.readyNanos != 0 && System.nanoTime() - h.readyNanos >= HEALTHY_AFTER_NANOS) {
                slot.consecutiveFailures = 0; // it ran fine for a while: not a crash loop
            }
            slot.consecutiveFailures++;
            String last = slot.lastOutputLine();
            slot.lastFailure = "worker " + slot.id + " " + what + (startup ? " during start-up" : "")
                    + (last != null ? " (last stderr line: " + last + ")" : "");
            if (slot.consecutiveFailures > config.restart().crashLoopLimit()) {
                slot.down = true;
                log.error("worker[{}] is in a crash loop ({} consecutive failures); leaving it down until a reload: {}",
                        slot.id, slot.consecutiveFailures, slot.lastFailure);
                return;
            }
            // Issue 11: the first failure of a slot that was healthy is replaced at once (a fork is cheap, and a
            // one-off crash is not a loop); consecutive failures back off initial × 2^(n-2), capped.
            long initial = config.restart().backoffInitial().toMillis();
            int shift = Math.min(30, slot.consecutiveFailures - 2);
            delayMs = slot.consecutiveFailures <= 1 ? 0 : Math.min(config.restart().backoffMax().toMillis(), initial << shift);
            slot.pendingRestart = scheduler.schedule(() -> spawn(slot), delayMs, TimeUnit.MILLISECONDS);
        }
        log.info("worker[{}] restarting in {} ms (consecutive failures: {})", slot.id, delayMs, slot.consecutiveFailures);
    }

    /** A request or ping succeeded: the slot is healthy. */
    void markHealthy(WorkerHandle h) {
        Slot s = slots[h.slot];
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
        if (h.ended.get() || !h.retiring.compareAndSet(false, true)) {
            return;
        }
        h.outOfService.complete(null);
        h.retireReason = reason;
        removeReady(h);
        if (!h.ended.get()) {
            h.state = State.RETIRING;
        }
        events.workerRetired(h, reason);
        if (reason == RetireReason.START_FAILED) {
            kill(h, false);
            crashed(slots[h.slot], h, h.endDescription == null ? "failed to start" : h.endDescription, true);
            return;
        }
        if (reason.replaceNow && !closing && !stopping) {
            Slot s = slots[h.slot];
            boolean replace;
            synchronized (s) {
                replace = s.current == h && h.replaced.compareAndSet(false, true);
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

    // ---------------------------------------------------------------- memory watchdog

    private static final long PAGE_SIZE = 4096;

    /**
     * Busy workers are not pinged, so a request that allocates without bound is watched from here: every 250 ms the
     * RSS of each busy worker is read from /proc/PID/statm; above the hard limit (2 × maxRssBytes) the worker is
     * stopped (SIGTERM → grace → SIGKILL) and replaced, and its request fails with WORKER_FAILED (not retried).
     */
    void startMemoryWatchdog() {
        if (config.recycling().maxRssBytes() <= 0) {
            return;
        }
        long hardLimit = config.recycling().maxRssBytes() > Long.MAX_VALUE / 2 ? Long.MAX_VALUE : 2 * config.recycling().maxRssBytes();
        scheduler.scheduleWithFixedDelay(() -> {
            for (WorkerHandle h : live) {
                if (!h.hasRequestInFlight() || h.ended.get() || h.retiring.get() || h.pid <= 0) {
                    continue;
                }
                long rss = readRss(h.pid);
                if (rss > hardLimit) {
                    h.rssBytes = rss;
                    h.requestCaused = true;
                    h.endDescription = "was stopped: its memory use (" + mib(rss) + " MiB) exceeded the limit of "
                            + mib(hardLimit) + " MiB";
                    log.warn("worker[{}] pid {} {}", h.slot, h.pid, h.endDescription);
                    retire(h, RetireReason.BROKEN);
                }
            }
        }, 250, 250, TimeUnit.MILLISECONDS);
    }

    private static long mib(long bytes) {
        return bytes / (1024 * 1024);
    }

    static long readRss(long pid) {
        try {
            String statm = java.nio.file.Files.readString(Path.of("/proc/" + pid + "/statm"));
            String[] f = statm.trim().split(" ");
            return Long.parseLong(f[1]) * PAGE_SIZE;
        } catch (IOException | RuntimeException e) {
            return -1;
        }
    }

    // ---------------------------------------------------------------- ready queue (feeds the pool's factory)

    private void offerReady(WorkerHandle h) {
        lock.lock();
        try {
            readyQueue.addLast(h);
        } finally {
            lock.unlock();
        }
    }

    boolean removeReady(WorkerHandle h) {
        lock.lock();
        try {
            return readyQueue.remove(h);
        } finally {
            lock.unlock();
        }
    }

    boolean hasQueuedReady() {
        lock.lock();
        try {
            return !readyQueue.isEmpty();
        } finally {
            lock.unlock();
        }
    }


    /** The next queued worker that completed its hello and is still usable, or null; never waits. */
    WorkerHandle pollReady() {
        lock.lock();
        try {
            WorkerHandle h;
            while ((h = readyQueue.pollFirst()) != null) {
                if (h.usable()) {
                    return h;
                }
                if (h.retireRequested && !h.ended.get()) {
                    WorkerHandle old = h;
                    scheduler.execute(() -> retire(old, RetireReason.RELOAD));
                }
            }
            return null;
        } finally {
            lock.unlock();
        }
    }

    boolean allDown() {
        for (Slot s : slots) {
            if (!s.down) {
                return false;
            }
        }
        return true;
    }

    /** A reload's replacement failed to start: the old worker (still serving) becomes current again. */
    void revert(Slot s, WorkerHandle old, WorkerHandle failed) {
        synchronized (s) {
            if (s.pendingRestart != null) {
                s.pendingRestart.cancel(false);
                s.pendingRestart = null;
            }
            failed.replaced.set(true);
            s.current = old;
            old.replaced.set(false);
        }
        if (!failed.ended.get()) {
            retire(failed, RetireReason.SHUTDOWN);
        }
    }

    /** Clears crash-loop state so a reload can try again. */
    void resetSlot(Slot s) {
        synchronized (s) {
            s.down = false;
            s.consecutiveFailures = 0;
            if (s.pendingRestart != null) {
                s.pendingRestart.cancel(false);
                s.pendingRestart = null;
            }
        }
    }

    // ---------------------------------------------------------------- shutdown

    /** Stops every worker: shutdown message, then SIGTERM/SIGKILL. Waits up to 2·grace + 1 s. */
    void closeAll() {
        closing = true;
        for (Slot s : slots) {
            synchronized (s) {
                if (s.pendingRestart != null) {
                    s.pendingRestart.cancel(false);
                }
            }
        }
        List<CompletableFuture<Void>> exits = new ArrayList<>();
        for (WorkerHandle h : List.copyOf(live)) {
            h.retiring.set(true);
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
