package analytics.engine.workers;

import analytics.engine.api.AnalysisException;
import analytics.engine.api.AnalysisInput;
import analytics.engine.api.Cancellation;
import analytics.engine.api.PythonBackend;
import analytics.engine.api.PythonBackend.PythonResult;
import analytics.engine.proto.ErrorCode;
import analytics.engine.workers.WorkerHandle.RetireReason;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.BiConsumer;
import java.util.function.Consumer;
import java.util.function.LongSupplier;
import java.util.function.Supplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One client request to the Python workers (up to two attempts) and how it ends early: at its deadline (TIMEOUT,
 * or OVERLOADED when it never reached a worker) or at its caller's cancellation (CANCELLED), each followed by the
 * stop of its computation on the worker it holds (a {@code cancel} frame, else a kill). {@link WorkerCall} runs
 * it on a worker; {@link WorkerWait} queues it for one.
 */
final class PythonCall {

    private static final Logger log = LoggerFactory.getLogger(PythonCall.class);

    /** What a call needs from its pool to end early and stop its computation. */
    record Stops(PoolMetrics metrics, ScheduledExecutorService deadlines, LongSupplier cancelStopWaitMs,
                 BiConsumer<WorkerHandle, RetireReason> invalidate, Supplier<Map<String, Integer>> counts,
                 Consumer<PythonCall> leaveQueue) {
    }

    private final Stops stops;

    final AnalysisInput input;
    final long timeoutMs;
    final long startNanos = System.nanoTime();
    final long deadlineNanos;
    final String id;
    final CompletableFuture<PythonResult> result = new CompletableFuture<>();
    final AtomicReference<WorkerHandle> onWorker = new AtomicReference<>();
    final AtomicInteger attempts = new AtomicInteger();
    final PythonBackend.Listener listener;
    final Cancellation cancel;
    volatile ScheduledFuture<?> deadlineTask;
    volatile boolean everSent;
    /** Deregisters this call from its Cancellation (set once submitted). */
    volatile Runnable unlisten;
    /** When a CANCELLED cancellation answered this call ({@link System#nanoTime()}), else 0. */
    volatile long cancelledAtNanos;
    /** Why this call's computation is being stopped on its worker (CANCELLED, TIMEOUT), else null. */
    volatile RetireReason stopReason;
    /** When the stop was asked for ({@link System#nanoTime()}). */
    volatile long stopAtNanos;
    /** Queue position last reported to the listener. */
    int reportedPosition;

    PythonCall(AnalysisInput input, long timeoutMs, Cancellation cancel, PythonBackend.Listener listener, Stops stops) {
        this.stops = stops;
        this.input = input;
        this.timeoutMs = timeoutMs;
        this.cancel = cancel;
        this.listener = listener;
        this.deadlineNanos = startNanos + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
        this.id = input.requestId() == null || input.requestId().isEmpty()
                ? UUID.randomUUID().toString() : input.requestId();
    }

    AnalysisException noWorkerBeforeDeadline() {
        Map<String, Integer> c = stops.counts().get();
        return new AnalysisException(ErrorCode.OVERLOADED, "no Python worker became free within the request's "
                + "deadline of " + timeoutMs + " ms (" + c.getOrDefault("busy", 0) + " busy, "
                + c.getOrDefault("starting", 0) + " starting)");
    }

    /** Runs on the scheduler exactly at the deadline. */
    void onDeadline() {
        WorkerHandle h = onWorker.get();
        if (h == null && !everSent) {
            // Never reached a worker: the wait for one could not finish before the deadline. That is overload
            // (retry later, elsewhere), not a slow algorithm, and it says nothing about the workers' health.
            result.completeExceptionally(noWorkerBeforeDeadline());
            return;
        }
        String msg = "Python algorithm '" + input.algorithm() + "' did not finish within " + timeoutMs + " ms";
        if (result.completeExceptionally(new AnalysisException(ErrorCode.TIMEOUT, msg))) {
            stops.metrics().timeouts.increment();
            WorkerHandle w = onWorker.get();
            if (w != null) {
                log.warn("request {} ({}) passed its {} ms deadline on worker[{}] pid {}: stopping it", id,
                        input.algorithm(), timeoutMs, w.slot, w.pid);
                stopOnWorker(w, RetireReason.TIMEOUT);
            }
        }
    }

    /** Called by WorkerCall once the request frame is written: a stop asked for meanwhile must follow it. */
    void sentTo(WorkerHandle h) {
        RetireReason stopping = stopReason;
        if (stopping != null && onWorker.get() == h) {
            stopOnWorker(h, stopping);
        }
    }

    /** Called by WorkerCall when {@code h} answered this call and is about to go back to the pool. */
    void answeredOn(WorkerHandle h) {
        if (stopReason == null) {
            return;
        }
        long ns = System.nanoTime() - stopAtNanos;
        if (cancelledAtNanos != 0) { // counted before the worker is lent again
            stops.metrics().cancelledStopped.increment();
            stops.metrics().cancelRelease.record(System.nanoTime() - cancelledAtNanos, TimeUnit.NANOSECONDS);
        }
        log.info("worker[{}] stopped request {} ({}): free again {} ms after the stop was asked", h.slot, id,
                stopReason == RetireReason.CANCELLED ? "cancelled" : "past its deadline",
                String.format(java.util.Locale.ROOT, "%.1f", ns / 1e6));
    }

    /**
     * True when this call was answered (deadline, cancellation). A Cancellation is set before its listeners
     * run — one at a time, for every item of a batch — so this applies it at once rather than let a borrower
     * that got a worker meanwhile start work nobody wants.
     */
    boolean abandoned() {
        Cancellation.Cause c = cancel.cause();
        if (c != null && c.kind() == Cancellation.Kind.CANCELLED) {
            onCancel(c); // idempotent: the first of this and the listener answers and counts
        }
        return result.isDone();
    }

    /**
     * The caller's cancellation. A deadline is the same as this call's own deadline. Otherwise the call is
     * answered CANCELLED at once (nothing is retried after it); a queued request leaves the queue (its
     * borrower gives up at its next check); a running one is stopped on its worker: a cancel frame when the
     * worker offers it (it answers CANCELLED and goes back to the pool), else — or when it does not answer
     * within CANCEL_STOP_WAIT_MS — the worker is killed and replaced.
     */
    void onCancel(Cancellation.Cause cause) {
        if (cause.kind() == Cancellation.Kind.DEADLINE) {
            onDeadline();
            return;
        }
        if (!result.completeExceptionally(new AnalysisException(ErrorCode.CANCELLED,
                "request cancelled: " + cause.reason()))) {
            return; // answered already
        }
        cancelledAtNanos = cause.atNanos();
        stops.leaveQueue().accept(this);
        WorkerHandle w = onWorker.get();
        if (w == null) {
            stops.metrics().cancelledQueued.increment();
            log.debug("request {} ({}) cancelled while waiting for a worker ({})", id, input.algorithm(), cause.reason());
            return;
        }
        log.debug("request {} ({}) cancelled on worker[{}] pid {} ({}): stopping it", id, input.algorithm(), w.slot,
                w.pid, cause.reason());
        stopOnWorker(w, RetireReason.CANCELLED);
    }

    /**
     * Stops the computation of an answered call (cancelled: CANCELLED; past its deadline: TIMEOUT) on {@code w}: a
     * {@code cancel} frame, after which the worker answers CANCELLED and goes back to the pool; a worker that does not
     * offer it, or does not answer within {@link PythonWorkerPool#CANCEL_STOP_WAIT_MS} (see {@link PythonWorkerPool#cancelStopWait}), is killed and
     * replaced. Safe to call twice
     * (both steps check that the call still owns the worker).
     */
    private void stopOnWorker(WorkerHandle w, RetireReason reason) {
        if (stopReason == null) {
            stopAtNanos = System.nanoTime();
            stopReason = reason;
        }
        if (w.sendCancel(id)) {
            long waitMs = stops.cancelStopWaitMs().getAsLong();
            try {
                stops.deadlines().schedule(() -> {
                    if (onWorker.compareAndSet(w, null)) {
                        log.warn("worker[{}] pid {} did not stop request {} within {} ms of the cancel: replacing it",
                                w.slot, w.pid, id, waitMs);
                        killStuck(w);
                    }
                }, waitMs, TimeUnit.MILLISECONDS);
            } catch (java.util.concurrent.RejectedExecutionException e) {
                // closing: the workers are being stopped anyway
            }
        } else if (onWorker.compareAndSet(w, null)) {
            killStuck(w);
        }
    }

    private void killStuck(WorkerHandle w) {
        if (stopReason == RetireReason.CANCELLED) { // counted before the worker leaves: /health shows both at once
            stops.metrics().cancelledKilled.increment();
            stops.metrics().cancelRelease.record(System.nanoTime() - cancelledAtNanos, TimeUnit.NANOSECONDS);
        }
        stops.invalidate().accept(w, stopReason);
    }

    /** The answer to the client for a failure of this call (a worker's death, the engine's shutdown, …). */
    AnalysisException failure(Throwable e) {
        if (e instanceof AnalysisException ae) {
            return ae;
        }
        if (e instanceof WorkerDiedException) {
            String retried = attempts.get() > 1 ? " (after one retry on another worker)" : "";
            return new AnalysisException(ErrorCode.WORKER_FAILED, e.getMessage() + " while running '"
                    + input.algorithm() + "'" + retried);
        }
        if (e instanceof WorkerSupervisor.ShutdownException) {
            return new AnalysisException(ErrorCode.UNAVAILABLE, e.getMessage());
        }
        if (e instanceof CancelledAttempt) {
            // the call was already answered (deadline); this value is never seen by the client
            return new AnalysisException(ErrorCode.TIMEOUT, "request " + id + " passed its deadline");
        }
        return new AnalysisException(ErrorCode.INTERNAL, "Python request failed: " + e);
    }

    /** The call was answered before this attempt could run. */
    static final class CancelledAttempt extends RuntimeException {
        CancelledAttempt() {
            super("request already answered", null, false, false);
        }
    }
}
