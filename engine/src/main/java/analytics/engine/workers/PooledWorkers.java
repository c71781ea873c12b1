package analytics.engine.workers;

import analytics.engine.workers.WorkerHandle.RetireReason;
import java.time.Duration;
import java.util.NoSuchElementException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
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
 * The commons-pool2 pool of ready workers: its factory (takes workers that completed their hello from the
 * supervisor, never waits; pings idle ones; hands destroyed ones back to the supervisor to retire) and its
 * capacity, which follows the workers it holds. Processes stay the {@link WorkerSupervisor}'s; borrowing
 * ({@code borrowObject(Duration)} up to a request's deadline) is {@link PythonWorkerPool}'s.
 */
final class PooledWorkers {

    private static final Logger log = LoggerFactory.getLogger(PooledWorkers.class);

    private final WorkerPoolConfig config;
    private final WorkerSupervisor supervisor;
    private final ScheduledExecutorService scheduler;
    private final AtomicBoolean closed;
    private final GenericObjectPool<WorkerHandle> pool;
    /** Guards the pool's capacity (maxTotal): see {@link #grow}. */
    private final Object capacityLock = new Object();

    PooledWorkers(WorkerPoolConfig config, WorkerSupervisor supervisor, ScheduledExecutorService scheduler,
            AtomicBoolean closed) {
        this.config = config;
        this.supervisor = supervisor;
        this.scheduler = scheduler;
        this.closed = closed;
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
        pc.setTimeBetweenEvictionRuns(config.timeouts().pingInterval());
        pc.setNumTestsPerEvictionRun(config.workers() + 1);
        pc.setEvictionPolicy((cfg, underTest, idleCount) -> false); // never evict for idleness; validation pings
        pc.setJmxEnabled(false);
        this.pool = new GenericObjectPool<>(new Factory(), pc);
    }

    GenericObjectPool<WorkerHandle> pool() {
        return pool;
    }

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
            if (!h.usable() || h.needsRecycle(config.recycling().maxRssBytes())) {
                return false;
            }
            if (p.getState() == PooledObjectState.EVICTION) { // idle check by the pool's evictor: ping
                try {
                    h.ping().get(config.timeouts().pingTimeout().toMillis(), TimeUnit.MILLISECONDS);
                    supervisor.markHealthy(h);
                    if (h.needsRecycle(config.recycling().maxRssBytes())) {
                        log.info("worker[{}] pid {} RSS {} bytes is over the limit of {}: recycling", h.slot, h.pid,
                                h.rssBytes, config.recycling().maxRssBytes());
                        return false;
                    }
                } catch (java.util.concurrent.TimeoutException e) {
                    log.warn("worker[{}] pid {} did not answer a ping within {} ms: replacing it", h.slot, h.pid,
                            config.timeouts().pingTimeout().toMillis());
                    h.noteRetireReason(RetireReason.BROKEN);
                    return false;
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    return false;
                } catch (Exception e) {
                    if (!supervisor.isClosing() && !h.hasEnded()) {
                        log.warn("worker[{}] pid {}: ping failed ({}): replacing it", h.slot, h.pid, PythonWorkerPool.unwrap(e).getMessage());
                        h.noteRetireReason(RetireReason.BROKEN);
                    }
                    return false;
                }
            }
            return true;
        }

        @Override
        public void destroyObject(PooledObject<WorkerHandle> p, DestroyMode mode) {
            WorkerHandle h = p.getObject();
            h.markDestroyed();
            shrink();
            if (supervisor.isClosing() || h.hasEnded()) {
                fillPoolSoon();
                return;
            }
            RetireReason reason = h.retireReason();
            if (reason == RetireReason.BROKEN && !h.isRetiring()
                    && (!h.processAlive() || !h.connected())) {
                // It is dying by itself (crash, kill -9, lost connection): the supervisor's end-of-process path
                // restarts it with crash accounting (backoff, crash-loop limit). Make sure that path runs.
                supervisor.ensureEnding(h);
                fillPoolSoon();
                return;
            }
            if (reason == null) {
                if (h.retireRequested()) {
                    reason = RetireReason.RELOAD;
                } else if (h.needsRecycle(config.recycling().maxRssBytes())) {
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
    void fillPoolSoon() {
        try {
            scheduler.execute(this::fillPool);
        } catch (java.util.concurrent.RejectedExecutionException e) {
            // closing
        }
    }

    /**
     * Adds the workers that completed their hello to the pool, then runs one pass of the evictor's idle check
     * (ping each idle worker) on this thread; the number of idle workers it found.
     */
    int checkIdleNow() throws Exception {
        fillPool();
        int idle = pool.getNumIdle();
        pool.evict();
        return idle;
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
}
