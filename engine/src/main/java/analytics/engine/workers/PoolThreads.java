package analytics.engine.workers;

import java.util.concurrent.ExecutorService;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/** The threads {@link PythonWorkerPool} runs on, all daemons, created together and shut down together. */
final class PoolThreads {

    /** The supervisor's and the pool's own tasks (spawns, restarts, filling the pool, retries). */
    final ScheduledExecutorService scheduler;
    /** Request deadlines (on the worker connections' event loops once shared: {@link DeadlineTimer#useLoops}). */
    final DeadlineTimer deadlines;
    /** Borrowing a worker for a request that has to wait for one (at most one thread per concurrent request). */
    final ExecutorService borrowers;
    /** What follows a worker's answer or a sent frame (giving the worker back, deleting files), off the network threads. */
    final ExecutorService completions;

    PoolThreads(int maxConcurrent) {
        // Core threads never time out: workers are spawned on these threads and their PDEATHSIG is tied to them.
        ScheduledThreadPoolExecutor s = new ScheduledThreadPoolExecutor(2, daemon("worker-supervisor"));
        s.setRemoveOnCancelPolicy(true);
        s.prestartAllCoreThreads();
        this.scheduler = s;
        this.deadlines = new DeadlineTimer(daemon("python-deadline"));
        ThreadPoolExecutor b = new ThreadPoolExecutor(maxConcurrent, maxConcurrent, 30, TimeUnit.SECONDS,
                new LinkedBlockingQueue<>(), daemon("python-borrow"));
        b.allowCoreThreadTimeOut(true);
        this.borrowers = b;
        ThreadPoolExecutor c = new ThreadPoolExecutor(2, 2, 30, TimeUnit.SECONDS, new LinkedBlockingQueue<>(),
                daemon("python-complete"));
        c.allowCoreThreadTimeOut(true);
        this.completions = c;
    }

    /** Stops them: pending scheduled and borrowing tasks are dropped, queued completions still run. */
    void close() {
        scheduler.shutdownNow();
        deadlines.close();
        borrowers.shutdownNow();
        completions.shutdown();
    }

    private static ThreadFactory daemon(String name) {
        AtomicInteger n = new AtomicInteger();
        return r -> {
            Thread t = new Thread(r, name + "-" + n.incrementAndGet());
            t.setDaemon(true);
            return t;
        };
    }
}
