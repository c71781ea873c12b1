package analytics.engine.workers;

import analytics.engine.workers.launch.LaunchedProcess;

import analytics.engine.workers.transport.WorkerMessage.Pong;
import analytics.engine.workers.transport.WorkerMessage.Response;
import io.netty.buffer.ByteBuf;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

/**
 * One worker process and its connection. Owned by the {@link WorkerSupervisor}; lent to at most one request at
 * a time by the commons-pool2 pool in {@link PythonWorkerPool}.
 */
final class WorkerHandle {

    enum State { STARTING, READY, BUSY, RETIRING, DEAD }

    /** Why a worker is being taken out of service. */
    enum RetireReason {
        /** request deadline passed: SIGTERM → grace → SIGKILL, replace now. */
        TIMEOUT(false, true),
        /** request/connection broken (died, protocol error, failed validation): kill, replace now. */
        BROKEN(false, true),
        /** max requests / RSS: shutdown message while idle, replace now. */
        RECYCLE(true, true),
        /** rolling reload: the replacement is already running; shutdown message, no new spawn. */
        RELOAD(true, false),
        /** engine shutdown. */
        SHUTDOWN(true, false),
        /** did not complete its hello in time or spoke the wrong protocol: counts as a start failure. */
        START_FAILED(false, false),
        /** its request was cancelled and it cannot stop (no cancel feature, or no answer to the cancel frame):
         *  SIGTERM → grace → SIGKILL, replace now. */
        CANCELLED(false, true);

        final boolean graceful;
        final boolean replaceNow;

        RetireReason(boolean graceful, boolean replaceNow) {
            this.graceful = graceful;
            this.replaceNow = replaceNow;
        }
    }

    final int slot;
    final long generation;
    final String token;
    final long spawnedNanos = System.nanoTime();
    final long recycleAfter;
    final AtomicLong requests = new AtomicLong();
    final AtomicBoolean retiring = new AtomicBoolean();
    final AtomicBoolean ended = new AtomicBoolean();
    /** Claimed by whoever starts this worker's successor (crash restart, retire, reload): exactly one does. */
    final AtomicBoolean replaced = new AtomicBoolean();

    volatile LaunchedProcess process;
    volatile long pid = -1;
    volatile State state = State.STARTING;
    /** Set by the hello; null before. */
    volatile WorkerChannel channel;
    volatile long readyNanos;
    volatile long rssBytes = -1;
    volatile Map<String, String> versions = Map.of();
    volatile Map<String, Object> algorithms = Map.of();
    /** Optional protocol features from the hello (e.g. {@code data_file}); empty for a worker that lists none. */
    volatile Set<String> features = Set.of();
    volatile RetireReason retireReason;
    /** Set by reload: leave the pool at the next borrow/return/eviction, no replacement. */
    volatile boolean retireRequested;
    volatile String endDescription;
    /** The engine stopped this worker because of the request it ran (memory limit): do not retry that request. */
    volatile boolean requestCaused;
    /** The pool has destroyed (dropped) this handle. */
    volatile boolean destroyed;
    final CompletableFuture<Void> readyFuture = new CompletableFuture<>();
    final CompletableFuture<Void> endedFuture = new CompletableFuture<>();
    /** Completes when the worker is taken out of service (retire) or ends. */
    final CompletableFuture<Void> outOfService = new CompletableFuture<>();

    WorkerHandle(int slot, long generation, String token, long recycleAfter) {
        this.slot = slot;
        this.generation = generation;
        this.token = token;
        this.recycleAfter = recycleAfter;
    }

    String name() {
        return "Python worker " + slot + (pid > 0 ? " (pid " + pid + ")" : "");
    }

    boolean processAlive() {
        LaunchedProcess p = process;
        return p != null && p.isAlive();
    }

    /** Connected, process alive, not retiring: may take a request. */
    boolean usable() {
        WorkerChannel c = channel;
        return !ended.get() && !retiring.get() && !retireRequested && c != null && c.isActive() && processAlive();
    }

    /** {@link #usable()} without the process check (a /proc read for a forked worker): for the request path,
     *  where the connection that just answered is the evidence of life and the pool's return test still runs. */
    boolean inService() {
        WorkerChannel c = channel;
        return !ended.get() && !retiring.get() && !retireRequested && c != null && c.isActive();
    }

    boolean needsRecycle(long maxRssBytes) {
        if (recycleAfter > 0 && requests.get() >= recycleAfter) {
            return true;
        }
        return maxRssBytes > 0 && rssBytes > maxRssBytes;
    }

    boolean connected() {
        WorkerChannel c = channel;
        return c != null && c.isActive();
    }

    boolean hasRequestInFlight() {
        WorkerChannel c = channel;
        return c != null && c.hasRequestInFlight();
    }

    /** Sends a complete request frame; the returned future completes with the worker's response. */
    CompletableFuture<Response> send(String id, ByteBuf frame) {
        return send(id, frame, null);
    }

    /** As {@link #send(String, ByteBuf)}; {@code progress} (may be null) gets the request's progress frames. */
    CompletableFuture<Response> send(String id, ByteBuf frame,
                                     java.util.function.Consumer<analytics.engine.workers.transport.WorkerMessage.Progress> progress) {
        WorkerChannel c = channel;
        if (c == null || ended.get()) {
            frame.release();
            return CompletableFuture.failedFuture(new WorkerDiedException(name() + " is not connected"));
        }
        state = State.BUSY;
        return c.send(id, frame, progress).thenApply(r -> {
            requests.incrementAndGet();
            if (state == State.BUSY) {
                state = State.READY;
            }
            return r;
        });
    }

    /** Pings the worker; the pong's RSS is remembered for recycling. */
    CompletableFuture<Pong> ping() {
        WorkerChannel c = channel;
        if (c == null) {
            return CompletableFuture.failedFuture(new WorkerDiedException(name() + " is not connected"));
        }
        return c.ping().thenApply(p -> {
            if (p.rssBytes() >= 0) {
                rssBytes = p.rssBytes();
            }
            return p;
        });
    }

    /**
     * Asks the worker to stop the computation of request {@code id} (PROTOCOL.md revision 3, {@code cancel}).
     * Returns false when this worker does not offer it or is not connected: the caller kills it instead.
     */
    boolean sendCancel(String id) {
        WorkerChannel c = channel;
        return features.contains("cancel") && c != null && c.sendCancel(id);
    }

    void sendShutdown() {
        WorkerChannel c = channel;
        if (c != null) {
            c.sendShutdown();
        }
    }

    /** Fails whatever is pending on this worker (request, ping). */
    void failPending(Throwable t) {
        WorkerChannel c = channel;
        if (c != null) {
            c.failPending(t);
        }
    }

    double uptimeSeconds() {
        long r = readyNanos;
        return r == 0 ? 0 : (System.nanoTime() - r) / 1e9;
    }
}
