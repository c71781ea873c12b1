package analytics.engine.workers;

import java.util.ArrayDeque;
import java.util.Deque;
import java.util.function.Consumer;

/**
 * Workers that completed their hello, in order, waiting for the pool's factory ({@link PooledWorkers}) to take
 * them. Never waits: the pool's own idle deque is where borrowers wait.
 */
final class ReadyQueue {

    private final Deque<WorkerHandle> queue = new ArrayDeque<>();
    /** A queued worker that reload asked to leave is retired through this (off the caller's thread). */
    private final Consumer<WorkerHandle> retireForReload;

    ReadyQueue(Consumer<WorkerHandle> retireForReload) {
        this.retireForReload = retireForReload;
    }

    synchronized void offer(WorkerHandle h) {
        queue.addLast(h);
    }

    synchronized boolean remove(WorkerHandle h) {
        return queue.remove(h);
    }

    synchronized boolean isEmpty() {
        return queue.isEmpty();
    }

    /** The next queued worker that is still usable, or null; drops the others (a reload's are retired). */
    synchronized WorkerHandle poll() {
        WorkerHandle h;
        while ((h = queue.pollFirst()) != null) {
            if (h.usable()) {
                return h;
            }
            if (h.retireRequested() && !h.hasEnded()) {
                retireForReload.accept(h);
            }
        }
        return null;
    }
}
