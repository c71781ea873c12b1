package analytics.engine.workers;

import analytics.engine.workers.WorkerHandle.RetireReason;
import java.time.Duration;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;

/**
 * What the supervisor tells the pool, and who waits for it: a worker ready (its hello's algorithms and versions
 * kept for status, the pool filled, waiters woken), crashed (metrics, the breaker on a start-up failure),
 * restarted or recycled (metrics); {@link #awaitReady} for the engine's start.
 */
final class PoolEvents implements WorkerSupervisor.Events {

    private final PoolMetrics metrics;
    private final Admission admission;
    /** Moves hello'd workers into the pool (a lambda: the pool is made after the supervisor). */
    private final Runnable fillPool;
    private final Object monitor = new Object();
    private volatile Map<String, Object> algorithmInfo = Map.of();
    private volatile Map<String, String> pythonVersions = Map.of();

    PoolEvents(PoolMetrics metrics, Admission admission, Runnable fillPool) {
        this.metrics = metrics;
        this.admission = admission;
        this.fillPool = fillPool;
    }

    @Override
    public void workerReady(WorkerHandle h) {
        if (!h.algorithms.isEmpty()) {
            algorithmInfo = Map.copyOf(new TreeMap<>(h.algorithms));
        }
        if (!h.versions.isEmpty()) {
            pythonVersions = h.versions;
        }
        wake();
        fillPool.run();
    }

    @Override
    public void workerCrashed(WorkerHandle h, String description, boolean duringStartup) {
        metrics.crashes.increment();
        if (duringStartup) {
            admission.startFailed(new WorkerDiedException(description));
        }
        wake();
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

    /** The per-algorithm descriptions from the latest hello (description, required, optional, input). */
    Map<String, Object> algorithmInfo() {
        return algorithmInfo;
    }

    Map<String, String> pythonVersions() {
        return pythonVersions;
    }

    /** Wakes {@link #awaitReady} (a worker came or failed, or the pool closed). */
    void wake() {
        synchronized (monitor) {
            monitor.notifyAll();
        }
    }

    /** Waits until {@code enough}; false at {@code timeout} or as soon as {@code hopeless} (every slot down, closed). */
    boolean awaitReady(Duration timeout, BooleanSupplier enough, BooleanSupplier hopeless) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        synchronized (monitor) {
            while (true) {
                if (enough.getAsBoolean()) {
                    return true;
                }
                if (hopeless.getAsBoolean()) {
                    return false;
                }
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    return false;
                }
                TimeUnit.NANOSECONDS.timedWait(monitor, Math.min(left, TimeUnit.MILLISECONDS.toNanos(100)));
            }
        }
    }
}
