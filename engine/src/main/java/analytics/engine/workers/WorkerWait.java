package analytics.engine.workers;

import analytics.engine.api.AnalysisException;
import analytics.engine.api.PythonBackend;
import analytics.engine.proto.ErrorCode;
import java.time.Duration;
import java.util.Map;
import java.util.NoSuchElementException;
import java.util.concurrent.ConcurrentSkipListMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.commons.pool2.impl.GenericObjectPool;

/**
 * Waiting for a free worker: commons-pool2's {@code borrowObject(Duration)} up to the request's deadline (or the
 * optional {@code borrowWait} cap), the queue of waiting requests by arrival (their positions for
 * AnalyzeWithProgress), and the OVERLOADED / UNAVAILABLE answer when no worker came.
 */
final class WorkerWait {

    private final WorkerPoolConfig config;
    private final GenericObjectPool<WorkerHandle> pool;
    private final WorkerSupervisor supervisor;
    private final AtomicBoolean closed;
    /** Requests waiting for a worker, by arrival (for AnalyzeWithProgress's queue position). */
    private final ConcurrentSkipListMap<Long, PythonCall> waiting = new ConcurrentSkipListMap<>();
    private final AtomicLong queueSeq = new AtomicLong();

    WorkerWait(WorkerPoolConfig config, GenericObjectPool<WorkerHandle> pool, WorkerSupervisor supervisor,
               AtomicBoolean closed) {
        this.config = config;
        this.pool = pool;
        this.supervisor = supervisor;
        this.closed = closed;
    }

    /** A cancelled call leaves the queue at once (its borrower gives up at its next check). */
    void leave(PythonCall call) {
        waiting.values().remove(call);
    }

    /** Borrows an idle worker without waiting, or returns null. */
    WorkerHandle borrowNow() {
        try {
            return pool.borrowObject(Duration.ZERO);
        } catch (Exception e) {
            return null; // none idle (the pool's timeout), or closing
        }
    }

    /**
     * Borrows an idle worker without waiting, or returns null; called on an event loop (a cheap request on the gRPC
     * network thread), it prefers an idle worker whose connection that same loop serves: then the request frame is
     * written at once, and the answer is read and the gRPC response written by this thread, with no hand-off to
     * another thread in either direction. Workers passed over go back to the idle set (its tail; the idle set
     * serves nobody waiting while it has workers, so no request waits longer for this).
     */
    WorkerHandle borrowNowNearby() {
        WorkerHandle first = borrowNow();
        if (first == null || first.onCallersLoop()) {
            return first;
        }
        boolean nearby = false; // idle or not: without one, nothing more is borrowed to look
        for (WorkerHandle h : supervisor.live) {
            if (h != first && h.onCallersLoop()) {
                nearby = true;
                break;
            }
        }
        if (!nearby) {
            return first;
        }
        return preferLocal(first, this::borrowNow, WorkerHandle::onCallersLoop, this::giveBackUnused,
                pool.getNumIdle());
    }

    private void giveBackUnused(WorkerHandle h) {
        try {
            pool.returnObject(h);
        } catch (Exception e) {
            // closing: the pool destroys it
        }
    }

    /**
     * {@code first} if {@code local}, else the first of up to {@code maxMore} further {@code next} ones that is
     * {@code local} (else {@code first}); every one taken and not chosen goes to {@code giveBack}, in the order taken.
     */
    static <T> T preferLocal(T first, java.util.function.Supplier<T> next, java.util.function.Predicate<T> local,
                             java.util.function.Consumer<T> giveBack, int maxMore) {
        if (first == null || local.test(first)) {
            return first;
        }
        java.util.List<T> passed = new java.util.ArrayList<>(2);
        T chosen = first;
        for (int i = 0; i < maxMore; i++) {
            T n = next.get();
            if (n == null) {
                break;
            }
            if (local.test(n)) {
                chosen = n;
                break;
            }
            passed.add(n);
        }
        if (chosen != first) {
            giveBack.accept(first);
        }
        passed.forEach(giveBack);
        return chosen;
    }

    /**
     * Borrow, waiting at most until the request's own deadline (min of timeout_ms and the gRPC deadline), or
     * for {@code borrowWait} when that optional cap is set; see the class comment for how the factory gets
     * workers. A wait that reaches the deadline is answered OVERLOADED by {@link PythonCall#onDeadline}.
     */
    WorkerHandle borrow(PythonCall call) throws AnalysisException {
        long start = System.nanoTime();
        long cap = config.timeouts().borrowWait().toNanos(); // 0 = no cap: up to the deadline
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
            budget = call.attempts.get() > 1 ? Math.max(cap, config.timeouts().startup().toNanos()) : cap;
            hardEnd = Math.min(call.deadlineNanos, start + Math.max(budget, config.timeouts().startup().toNanos()));
        }
        long slice = TimeUnit.MILLISECONDS.toNanos(200);
        long ticket = queueSeq.incrementAndGet();
        waiting.put(ticket, call);
        try {
            return borrowQueued(call, start, budget, hardEnd, slice, ticket);
        } finally {
            waiting.remove(ticket);
        }
    }

    private WorkerHandle borrowQueued(PythonCall call, long start, long budget, long hardEnd, long slice, long ticket)
            throws AnalysisException {
        long overloadWaited = 0;
        while (!closed.get()) {
            if (call.abandoned()) { // cancelled or past its deadline: leave the queue
                throw new AnalysisException(ErrorCode.CANCELLED, "request " + call.id + " left the queue");
            }
            if (call.listener != PythonBackend.Listener.NONE) {
                int position = waiting.headMap(ticket).size() + 1;
                if (position != call.reportedPosition) {
                    call.reportedPosition = position;
                    call.listener.queued(position);
                }
            }
            long now = System.nanoTime();
            long left = Math.min(hardEnd - now, budget - overloadWaited);
            if (left <= 0) {
                break;
            }
            if (supervisor.allDown()) {
                break; // nothing will come back before reload(): UNAVAILABLE below
            }
            boolean restarting = PoolStatus.countByState(supervisor).getOrDefault("starting", 0) > 0;
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
            if (!restarting && PoolStatus.countByState(supervisor).getOrDefault("starting", 0) == 0) {
                overloadWaited += System.nanoTime() - now;
            }
        }
        long waited = (System.nanoTime() - start) / 1_000_000;
        if (closed.get()) {
            throw new AnalysisException(ErrorCode.UNAVAILABLE, "the Python worker pool is shut down");
        }
        Map<String, Integer> c = PoolStatus.countByState(supervisor);
        int running = c.getOrDefault("ready", 0) + c.getOrDefault("busy", 0);
        if (running > 0 && System.nanoTime() - call.deadlineNanos >= 0) {
            throw call.noWorkerBeforeDeadline(); // the same answer as the deadline task's, whichever comes first
        }
        if (running == 0) {
            throw new AnalysisException(ErrorCode.UNAVAILABLE, "no Python worker is ready (" + c.getOrDefault("starting", 0)
                    + " starting, " + c.getOrDefault("down", 0) + " down)" + PoolStatus.downSuffix(supervisor) + "; waited " + waited + " ms");
        }
        int starting = c.getOrDefault("starting", 0);
        int down = c.getOrDefault("down", 0);
        String others = starting + down == 0 ? "" : " (" + starting + " more starting, " + down + " down)";
        throw new AnalysisException(ErrorCode.OVERLOADED, "all " + (starting + down == 0 ? config.workers() : running)
                + " Python workers are busy" + others + "; waited " + waited + " ms");
    }
}
