package analytics.engine.workers;

import java.util.ArrayDeque;
import java.util.Deque;
import java.util.concurrent.ScheduledFuture;

/**
 * One of the pool's worker positions and its restart policy: which process is current, how many times in a row
 * it failed, the backoff before the next start, and the crash-loop limit that leaves it down until a reload.
 * Fields other than the volatile ones are guarded by the slot's monitor.
 */
final class WorkerSlot {
    final int id;
    volatile WorkerHandle current;
    long generation;
    int consecutiveFailures;
    int restarts;
    volatile boolean down;
    volatile String lastFailure;
    ScheduledFuture<?> pendingRestart;
    private final Deque<String> recentOutput = new ArrayDeque<>();

    WorkerSlot(int id) {
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

    /** Cancels a restart that is waiting for its backoff. Call holding the slot's monitor. */
    void cancelPendingRestart() {
        if (pendingRestart != null) {
            pendingRestart.cancel(false);
            pendingRestart = null;
        }
    }

    /**
     * Counts a failure of {@code h} (the slot's current worker) and says when to start its replacement: the delay
     * in ms, or -1 when the slot is now in a crash loop and stays down until a reload. Call holding the slot's
     * monitor.
     */
    long failed(WorkerHandle h, String what, boolean startup, WorkerPoolConfig config) {
        if (h.readyNanos() != 0 && System.nanoTime() - h.readyNanos() >= WorkerSupervisor.HEALTHY_AFTER_NANOS) {
            consecutiveFailures = 0; // it ran fine for a while: not a crash loop
        }
        consecutiveFailures++;
        String last = lastOutputLine();
        lastFailure = "worker " + id + " " + what + (startup ? " during start-up" : "")
                + (last != null ? " (last stderr line: " + last + ")" : "");
        if (consecutiveFailures > config.restart().crashLoopLimit()) {
            down = true;
            return -1;
        }
        // Issue 11: the first failure of a slot that was healthy is replaced at once (a fork is cheap, and a
        // one-off crash is not a loop); consecutive failures back off initial × 2^(n-2), capped.
        long initial = config.restart().backoffInitial().toMillis();
        int shift = Math.min(30, consecutiveFailures - 2);
        return consecutiveFailures <= 1 ? 0 : Math.min(config.restart().backoffMax().toMillis(), initial << shift);
    }
}
