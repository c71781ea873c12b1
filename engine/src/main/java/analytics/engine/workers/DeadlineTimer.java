package analytics.engine.workers;

import io.netty.channel.EventLoopGroup;
import io.netty.util.concurrent.EventExecutor;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.TimeUnit;

/**
 * Times the Python requests' deadlines. Their work runs on one thread, {@code python-deadline}, kept free of
 * process spawning so that TIMEOUT is answered on time. A request submitted on one of the shared event loops
 * (a cheap request on a gRPC network thread) is timed by that loop instead: see {@link #schedule}.
 */
final class DeadlineTimer implements AutoCloseable {

    private final ScheduledThreadPoolExecutor thread;
    /** The shared event loops (null: none, everything is timed by {@link #thread}). */
    private volatile EventLoopGroup loops;

    DeadlineTimer(ThreadFactory threads) {
        thread = new ScheduledThreadPoolExecutor(1, threads);
        thread.setRemoveOnCancelPolicy(true);
        // Started now: most deadlines are timed by the event loops, so otherwise this thread would appear only
        // when the first one fires, much later, looking like a leak to a thread census (FaultSuite).
        thread.prestartAllCoreThreads();
    }

    void useLoops(EventLoopGroup loops) {
        this.loops = loops;
    }

    /** The deadline thread, for other work that must not wait behind process spawning (stopping a call). */
    ScheduledExecutorService executor() {
        return thread;
    }

    /** Runs {@code onDeadline} on the deadline thread, never before {@code timeoutMs}. */
    ScheduledFuture<?> schedule(Runnable onDeadline, long timeoutMs) {
        return schedule(loops, thread, onDeadline, timeoutMs);
    }

    /**
     * Schedules a request's deadline ({@code onDeadline} runs on {@code deadlines}, never before {@code timeoutMs}).
     * Submitted on one of the shared event loops, the timer goes into that loop's own queue: adding it there, and
     * removing it when the answer is finished on the same loop, wakes no thread, where {@code python-deadline}'s
     * queue woke that thread twice per request (schedule, cancel). Only when it fires is the deadline's work handed
     * to {@code deadlines} (it may stop and replace a worker: not for a network thread). Netty runs a scheduled task
     * only once its deadline has passed, so the engine still never answers TIMEOUT early. Anywhere else
     * {@code deadlines} times it itself.
     */
    static ScheduledFuture<?> schedule(EventLoopGroup loops, ScheduledExecutorService deadlines, Runnable onDeadline,
                                       long timeoutMs) {
        if (loops != null) {
            for (EventExecutor loop : loops) {
                if (loop.inEventLoop()) {
                    return loop.schedule(() -> {
                        try {
                            deadlines.execute(onDeadline);
                        } catch (RejectedExecutionException closed) {
                            // the pool is closed: its calls are failed by the close, as with deadlines' own queue
                        }
                    }, timeoutMs, TimeUnit.MILLISECONDS);
                }
            }
        }
        return deadlines.schedule(onDeadline, timeoutMs, TimeUnit.MILLISECONDS);
    }

    @Override
    public void close() {
        thread.shutdownNow();
    }
}
