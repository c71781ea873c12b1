package analytics.engine.workers;

import analytics.engine.workers.launch.LaunchedProcess;

import analytics.engine.workers.transport.WireCodec;
import analytics.engine.workers.transport.WorkerSocketServer.Connection;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.PooledByteBufAllocator;
import java.io.IOException;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

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

    /** The request currently on this worker; {@code progress} receives its progress frames (revision 3). */
    record InFlight(String id, CompletableFuture<Map<String, Object>> response,
                    java.util.function.Consumer<Map<String, Object>> progress) {
        InFlight(String id, CompletableFuture<Map<String, Object>> response) {
            this(id, response, null);
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
    final AtomicReference<InFlight> inFlight = new AtomicReference<>();
    final AtomicReference<InFlight> pendingPing = new AtomicReference<>();
    private final AtomicLong pingCounter = new AtomicLong();

    volatile LaunchedProcess process;
    volatile long pid = -1;
    volatile State state = State.STARTING;
    volatile Connection connection;
    volatile long readyNanos;
    volatile long rssBytes = -1;
    volatile long workerRequests = -1;
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

    /** The string entries of a hello's {@code features} list (anything else is ignored). */
    static Set<String> features(Object list) {
        if (!(list instanceof List<?> l)) {
            return Set.of();
        }
        java.util.HashSet<String> out = new java.util.HashSet<>();
        for (Object o : l) {
            if (o instanceof String s) {
                out.add(s);
            }
        }
        return Set.copyOf(out);
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
        Connection c = connection;
        return !ended.get() && !retiring.get() && !retireRequested && c != null && c.isActive() && processAlive();
    }

    boolean needsRecycle(long maxRssBytes) {
        if (recycleAfter > 0 && requests.get() >= recycleAfter) {
            return true;
        }
        return maxRssBytes > 0 && rssBytes > maxRssBytes;
    }

    /** Sends a complete request frame; the returned future completes with the worker's response map. */
    CompletableFuture<Map<String, Object>> send(String id, ByteBuf frame) {
        return send(id, frame, null);
    }

    /** As {@link #send(String, ByteBuf)}; {@code progress} (may be null) gets the request's progress frames. */
    CompletableFuture<Map<String, Object>> send(String id, ByteBuf frame,
                                                java.util.function.Consumer<Map<String, Object>> progress) {
        CompletableFuture<Map<String, Object>> f = new CompletableFuture<>();
        InFlight mine = new InFlight(id, f, progress);
        if (!inFlight.compareAndSet(null, mine)) {
            frame.release();
            // never two requests on one worker: a bug if it happens, so make it loud
            f.completeExceptionally(new IllegalStateException(name() + " already has a request in flight"));
            return f;
        }
        Connection c = connection;
        if (c == null || ended.get()) {
            frame.release();
            inFlight.compareAndSet(mine, null);
            f.completeExceptionally(new WorkerDiedException(name() + " is not connected"));
            return f;
        }
        state = State.BUSY;
        c.channel().writeAndFlush(frame).addListener(w -> {
            if (!w.isSuccess()) {
                if (inFlight.compareAndSet(mine, null)) {
                    f.completeExceptionally(new WorkerDiedException(name() + ": writing the request failed: " + w.cause()));
                }
            }
        });
        return f;
    }

    CompletableFuture<Map<String, Object>> ping() {
        CompletableFuture<Map<String, Object>> f = new CompletableFuture<>();
        Connection c = connection;
        if (c == null || !c.isActive()) {
            f.completeExceptionally(new WorkerDiedException(name() + " is not connected"));
            return f;
        }
        String id = "ping-" + pingCounter.incrementAndGet();
        InFlight mine = new InFlight(id, f);
        pendingPing.set(mine);
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("type", "ping");
        m.put("id", id);
        try {
            c.channel().writeAndFlush(WireCodec.encodeSimple(c.channel().alloc(), m));
        } catch (IOException e) {
            f.completeExceptionally(e);
        }
        return f;
    }

    /**
     * Asks the worker to stop the computation of request {@code id} (PROTOCOL.md revision 3, {@code cancel}).
     * Returns false when this worker does not offer it or is not connected: the caller kills it instead.
     */
    boolean sendCancel(String id) {
        Connection c = connection;
        if (!features.contains("cancel") || c == null || !c.isActive()) {
            return false;
        }
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("type", "cancel");
        m.put("id", id);
        try {
            c.channel().writeAndFlush(WireCodec.encodeSimple(c.channel().alloc(), m));
            return true;
        } catch (IOException e) {
            return false;
        }
    }

    void sendShutdown() {
        Connection c = connection;
        if (c != null && c.isActive()) {
            try {
                c.channel().writeAndFlush(WireCodec.encodeSimple(PooledByteBufAllocator.DEFAULT, Map.of("type", "shutdown")));
            } catch (IOException ignored) {
                // the SIGTERM that follows does the job
            }
        }
    }

    /** Fails whatever is pending on this worker (request, ping). */
    void failPending(Throwable t) {
        InFlight r = inFlight.getAndSet(null);
        if (r != null) {
            r.response().completeExceptionally(t);
        }
        InFlight p = pendingPing.getAndSet(null);
        if (p != null) {
            p.response().completeExceptionally(t);
        }
    }

    double uptimeSeconds() {
        long r = readyNanos;
        return r == 0 ? 0 : (System.nanoTime() - r) / 1e9;
    }
}
