package analytics.engine.workers;

import analytics.engine.workers.WorkerHandle.RetireReason;
import analytics.engine.workers.WorkerHandle.State;
import analytics.engine.workers.launch.WorkerLauncher;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.commons.pool2.impl.GenericObjectPool;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/** Rolling reload (SIGHUP / systemctl reload): every worker replaced, one slot at a time, with no failed request. */
final class RollingReload {

    private static final Logger log = LoggerFactory.getLogger(RollingReload.class);

    private final WorkerPoolConfig config;
    private final WorkerSupervisor supervisor;
    private final WorkerLauncher launcher;
    private final Admission admission;
    private final GenericObjectPool<WorkerHandle> pool;
    private final AtomicBoolean closed;
    private final AtomicReference<CompletableFuture<Void>> reloading = new AtomicReference<>();

    RollingReload(WorkerPoolConfig config, WorkerSupervisor supervisor, WorkerLauncher launcher, Admission admission,
                  GenericObjectPool<WorkerHandle> pool, AtomicBoolean closed) {
        this.config = config;
        this.supervisor = supervisor;
        this.launcher = launcher;
        this.admission = admission;
        this.pool = pool;
        this.closed = closed;
    }

    boolean running() {
        CompletableFuture<Void> r = reloading.get();
        return r != null && !r.isDone();
    }

    /**
     * Replaces every worker, one slot at a time: spawn the new process, wait for its hello, then retire the old
     * one as soon as it is idle (it finishes its current request). Slots that were down are retried. A reload
     * requested while one is running returns the running one's future.
     */
    CompletableFuture<Void> start() {
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
        admission.resetBreaker(); // the operator asks us to try again
        List<String> failures = new ArrayList<>();
        launcher.reload(); // fork server: a template with the code now on disk, before any worker is replaced
        for (WorkerSlot slot : supervisor.slots) {
            if (closed.get()) {
                return;
            }
            WorkerHandle old = slot.current;
            boolean wasDown = slot.down;
            supervisor.resetSlot(slot);
            WorkerHandle.State oldState = old == null ? null : old.state();
            boolean oldServing = old != null && !wasDown && oldState != State.DEAD && !old.isRetiring()
                    && oldState != State.STARTING;
            if (oldServing && !old.claimReplacement()) {
                oldServing = false; // its replacement is already on the way
                continue;
            }
            if (!oldServing && old != null && !old.hasEnded() && !wasDown) {
                continue; // starting right now: it runs the code on disk already
            }
            WorkerHandle fresh = supervisor.spawnOnSupervisorThread(slot).get();
            if (fresh == null) {
                return;
            }
            try {
                fresh.readyFuture.get(config.timeouts().startup().toMillis() + 1000, TimeUnit.MILLISECONDS);
            } catch (Exception e) {
                String why = "worker " + slot.id + ": replacement did not start: " + (e instanceof java.util.concurrent.ExecutionException && e.getCause() != null ? e.getCause() : e).getMessage();
                failures.add(why);
                log.error("rolling reload: {}", why);
                if (oldServing) {
                    supervisor.revert(slot, old, fresh);
                }
                continue;
            }
            if (oldServing) {
                old.requestRetireOnReturn();
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
                    old.outOfService.get(Math.max(60_000, config.timeouts().startup().toMillis()), TimeUnit.MILLISECONDS);
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
