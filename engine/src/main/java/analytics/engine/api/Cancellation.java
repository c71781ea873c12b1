package analytics.engine.api;

import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Consumer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The one signal that a call's work is no longer wanted, created by the gRPC layer (client cancelled, its
 * connection closed, or its deadline passed) and passed down through the {@code Dispatcher} to the Python
 * backend, which takes a queued request out of the queue and stops a running one on its worker. One
 * instance may cover many requests (every item of a BatchAnalyze call). Cancelling is idempotent: the first
 * cause wins and listeners run once, on the cancelling thread (they must be quick and must not block).
 */
public final class Cancellation {

    private static final Logger LOG = LoggerFactory.getLogger(Cancellation.class);

    /** Why the work is no longer wanted. */
    public enum Kind {
        /** The client cancelled the call, or its connection closed: nobody will read the answer. */
        CANCELLED,
        /** The call's gRPC deadline passed: handled like the request's own timeout (TIMEOUT). */
        DEADLINE
    }

    /** The cause of a cancellation and when it happened ({@link System#nanoTime()}). */
    public record Cause(Kind kind, String reason, long atNanos) {
    }

    private final AtomicReference<Cause> cause = new AtomicReference<>();
    private final CopyOnWriteArrayList<Consumer<Cause>> listeners = new CopyOnWriteArrayList<>();

    /** Cancels (first call only); returns true when this call did it. */
    public boolean cancel(Kind kind, String reason) {
        Cause c = new Cause(kind, reason, System.nanoTime());
        if (!cause.compareAndSet(null, c)) {
            return false;
        }
        for (Consumer<Cause> l : listeners) {
            run(l, c);
        }
        listeners.clear();
        return true;
    }

    public boolean isCancelled() {
        return cause.get() != null;
    }

    /** The cause, or null while not cancelled. */
    public Cause cause() {
        return cause.get();
    }

    /**
     * Runs {@code listener} when this is cancelled (at once when it already is). Returns the action that
     * removes the listener again: call it when the work ends, so a long BatchAnalyze does not collect one
     * listener per finished item.
     */
    public Runnable onCancel(Consumer<Cause> listener) {
        java.util.concurrent.atomic.AtomicBoolean ran = new java.util.concurrent.atomic.AtomicBoolean();
        Consumer<Cause> once = c -> {
            if (ran.compareAndSet(false, true)) { // cancel() and a late registration may both try
                listener.accept(c);
            }
        };
        listeners.add(once);
        Cause c = cause.get();
        if (c != null) {
            listeners.remove(once);
            run(once, c);
        }
        return () -> listeners.remove(once);
    }

    /** Listeners registered now (for leak checks in tests). */
    public int listenerCount() {
        return listeners.size();
    }

    private static void run(Consumer<Cause> l, Cause c) {
        try {
            l.accept(c);
        } catch (RuntimeException e) {
            LOG.error("cancellation listener failed", e);
        }
    }
}
