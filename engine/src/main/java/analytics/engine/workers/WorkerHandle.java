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
 *
 * <h2>Lifecycle</h2>
 * The state is private and changes only through the transition methods below, each of which checks under one
 * lock that its transition is legal and says whether it happened, so that of racing callers (crash restart,
 * retire, reload, cancel, recycling) exactly one wins:
 * <pre>
 *  from \ method        becameReady  startedRequest  finishedRequest  beginRetire(reason)  ended(description)
 *  STARTING             → READY      -               -                → RETIRING           → DEAD
 *  READY                -            → BUSY          -                → RETIRING           → DEAD
 *  BUSY                 -            -               → READY          → RETIRING           → DEAD
 *  RETIRING             -            -               -                - (lost: false)      → DEAD
 *  DEAD                 -            -               -                - (lost: false)      - (lost: null)
 * </pre>
 * "-" means the call changes nothing and reports that (false / null). {@code startedRequest} and
 * {@code finishedRequest} are {@link #send}'s own (a retiring worker that still gets a frame stays RETIRING). STARTING: spawned, no hello yet. READY:
 * hello done, idle. BUSY: a request frame is on its way or being computed. RETIRING: taken out of service
 * ({@link #beginRetire}; the reason is kept), its process is being stopped. DEAD: the process exited or its
 * connection closed ({@link #ended}); final. {@link #isRetiring()} stays true once retiring began, also after
 * the worker is DEAD, so that the end of a retired worker is told apart from a crash.
 *
 * <p>Two claims sit beside the lifecycle, each with its own "exactly one wins": who starts this worker's
 * successor ({@link #claimReplacement()}) and the reload's request to leave at the next borrow or return
 * ({@link #requestRetireOnReturn()}). Counters and facts from the hello (requests, RSS, versions, features) are
 * plain fields.
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

    private final Object lock = new Object();
    /** Guarded by {@link #lock}; read by {@link #state()} and the predicates. */
    private State state = State.STARTING;
    /** Guarded by {@link #lock}: retiring began (stays true when the worker then ends). */
    private boolean retireBegan;
    /** Guarded by {@link #lock}: why it is (to be) taken out of service; null while nothing decided it. */
    private RetireReason retireReason;
    /** Claimed by whoever starts this worker's successor (crash restart, retire, reload): exactly one does. */
    private final AtomicBoolean replaced = new AtomicBoolean();
    /** Set by reload: leave the pool at the next borrow/return/eviction, no replacement. */
    private volatile boolean retireRequested;
    /** Why it ended (or is being stopped); the first cause given wins over the exit status. */
    private volatile String endDescription;
    /** The engine stopped this worker because of the request it ran (memory limit): do not retry that request. */
    private volatile boolean requestCaused;
    /** The pool has destroyed (dropped) this handle. */
    private volatile boolean destroyed;

    volatile LaunchedProcess process;
    volatile long pid = -1;
    /** Set by {@link #attach}; null before the hello. */
    volatile WorkerChannel channel;
    /** Set by {@link #becameReady()}; 0 before. */
    private volatile long readyNanos;
    volatile long rssBytes = -1;
    volatile Map<String, String> versions = Map.of();
    volatile Map<String, Object> algorithms = Map.of();
    /** Optional protocol features from the hello (e.g. {@code data_file}); empty for a worker that lists none. */
    volatile Set<String> features = Set.of();
    /** Completes when the launcher returned its process (set in {@link #process}): a forked worker's hello can come first. */
    final CompletableFuture<Void> launched = new CompletableFuture<>();
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

    // ---------------------------------------------------------------- lifecycle transitions

    State state() {
        synchronized (lock) {
            return state;
        }
    }

    /** The connection that said hello (with its facts) is this worker's; the state is unchanged. */
    void attach(WorkerChannel c, Map<String, String> versions, Map<String, Object> algorithms, Set<String> features) {
        this.versions = versions;
        this.algorithms = algorithms;
        this.features = features;
        this.channel = c;
    }

    /** STARTING → READY (the hello was accepted). False when it is retiring or dead already. */
    boolean becameReady() {
        synchronized (lock) {
            if (state != State.STARTING) {
                return false;
            }
            readyNanos = System.nanoTime();
            state = State.READY;
            return true;
        }
    }

    /** READY → BUSY as a request frame goes out; a retiring worker stays RETIRING. */
    private void startedRequest() {
        synchronized (lock) {
            if (state == State.READY) {
                state = State.BUSY;
            }
        }
    }

    /** BUSY → READY when the request's answer arrived. */
    private void finishedRequest() {
        synchronized (lock) {
            if (state == State.BUSY) {
                state = State.READY;
            }
        }
    }

    /**
     * STARTING | READY | BUSY → RETIRING, remembering why. True for exactly one caller: the one that must stop the
     * process; false when retiring began before or the worker is dead.
     */
    boolean beginRetire(RetireReason reason) {
        synchronized (lock) {
            if (retireBegan || state == State.DEAD) {
                return false;
            }
            retireBegan = true;
            retireReason = reason;
            state = State.RETIRING;
        }
        outOfService.complete(null);
        return true;
    }

    /**
     * Any state → DEAD: its process exited or its connection closed. Returns the state it left for exactly one
     * caller (the one that runs the end logic), null for every later one. The end description given first
     * ({@link #noteEndCause}) wins over {@code description}.
     */
    State ended(String description) {
        State before;
        synchronized (lock) {
            if (state == State.DEAD) {
                return null;
            }
            before = state;
            state = State.DEAD;
            if (endDescription == null) {
                endDescription = description;
            }
        }
        outOfService.complete(null);
        return before;
    }

    /** Retiring began (it may have ended since). */
    boolean isRetiring() {
        synchronized (lock) {
            return retireBegan;
        }
    }

    /** Neither retiring nor dead (one read of the lifecycle, for the request path). */
    private boolean inLifecycleService() {
        synchronized (lock) {
            return !retireBegan && state != State.DEAD;
        }
    }

    boolean hasEnded() {
        synchronized (lock) {
            return state == State.DEAD;
        }
    }

    /** Why it is (to be) taken out of service, or null when nothing decided it yet. */
    RetireReason retireReason() {
        synchronized (lock) {
            return retireReason;
        }
    }

    /** The pool found it broken (failed ping) or invalidates it: remembers why, unless a reason is known. */
    void noteRetireReason(RetireReason reason) {
        synchronized (lock) {
            if (retireReason == null) {
                retireReason = reason;
            }
        }
    }

    /** Claims the right to start this worker's successor; true for exactly one caller. */
    boolean claimReplacement() {
        return replaced.compareAndSet(false, true);
    }

    /**
     * A reload's replacement failed to start and {@code old} is the slot's worker again: this one (the failed
     * replacement) must not be replaced, while {@code old}'s successor may be started once more.
     */
    void handBackTo(WorkerHandle old) {
        replaced.set(true);
        old.replaced.set(false);
    }

    /** Reload: leave the pool at the next borrow, return or eviction, without a replacement. */
    void requestRetireOnReturn() {
        retireRequested = true;
    }

    boolean retireRequested() {
        return retireRequested;
    }

    /** Why this worker is being stopped, said before stopping it; it names the end in logs and errors. */
    void noteEndCause(String description) {
        endDescription = description;
    }

    /** A protocol error: names the end unless a cause is known already. */
    void noteEndCauseIfAbsent(String description) {
        synchronized (lock) {
            if (endDescription == null) {
                endDescription = description;
            }
        }
    }

    /** Stopped because of the request it ran (memory limit): that request is not retried. */
    void noteStoppedForItsRequest(String description) {
        requestCaused = true;
        endDescription = description;
    }

    String endDescription() {
        return endDescription;
    }

    /** The request in flight may be retried on another worker (the engine did not stop this one because of it). */
    boolean requestRetryable() {
        return !requestCaused;
    }

    void markDestroyed() {
        destroyed = true;
    }

    /** The pool has destroyed (dropped) this handle. */
    boolean isDestroyed() {
        return destroyed;
    }

    /** When its hello was accepted, 0 before. */
    long readyNanos() {
        return readyNanos;
    }

    // ---------------------------------------------------------------- connection

    String name() {
        return "Python worker " + slot + (pid > 0 ? " (pid " + pid + ")" : "");
    }

    boolean processAlive() {
        LaunchedProcess p = process;
        return p != null && p.isAlive();
    }

    /** Connected, process alive, not retiring: may take a request. */
    boolean usable() {
        return inService() && processAlive();
    }

    /** {@link #usable()} without the process check (a /proc read for a forked worker): for the request path,
     *  where the connection that just answered is the evidence of life and the pool's return test still runs. */
    boolean inService() {
        WorkerChannel c = channel;
        return !retireRequested && c != null && c.isActive() && inLifecycleService();
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

    /** Its connection is served by the event loop the calling thread runs (a write from here needs no hand-off). */
    boolean onCallersLoop() {
        WorkerChannel c = channel;
        return c != null && c.onCallersLoop();
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
        if (c == null || hasEnded()) {
            frame.release();
            return CompletableFuture.failedFuture(new WorkerDiedException(name() + " is not connected"));
        }
        startedRequest();
        return c.send(id, frame, progress).thenApply(r -> {
            requests.incrementAndGet();
            finishedRequest();
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
