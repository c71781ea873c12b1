package analytics.engine.workers;

import analytics.engine.workers.transport.WireCodec;
import analytics.engine.workers.transport.WorkerMessage;
import analytics.engine.workers.transport.WorkerMessage.Pong;
import analytics.engine.workers.transport.WorkerMessage.Progress;
import analytics.engine.workers.transport.WorkerMessage.Response;
import analytics.engine.workers.transport.WorkerSocketServer.Connection;
import io.netty.buffer.ByteBuf;
import java.io.IOException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Consumer;

/**
 * The connection to one worker after its hello: sends requests, pings and the shutdown message, and matches
 * each response or pong to what is waiting for it (one request and one ping at a time).
 */
final class WorkerChannel {

    /** Something sent and not yet answered; {@code progress} (requests only, may be null) gets its progress frames. */
    private record Pending<T>(String id, CompletableFuture<T> answer, Consumer<Progress> progress) {
    }

    private final String name;
    private final Connection connection;
    private final AtomicReference<Pending<Response>> request = new AtomicReference<>();
    private final AtomicReference<Pending<Pong>> ping = new AtomicReference<>();
    private final AtomicLong pingCounter = new AtomicLong();

    WorkerChannel(String name, Connection connection) {
        this.name = name;
        this.connection = connection;
    }

    boolean isActive() {
        return connection.isActive();
    }

    void close() {
        connection.close();
    }

    boolean onCallersLoop() {
        return connection.channel().eventLoop().inEventLoop();
    }

    boolean hasRequestInFlight() {
        return request.get() != null;
    }

    /**
     * Writes a complete request frame; the future completes with the worker's response. {@code progress} (may be
     * null) gets the request's progress frames (revision 3), on the socket's event loop: it must not block.
     */
    CompletableFuture<Response> send(String id, ByteBuf frame, Consumer<Progress> progress) {
        CompletableFuture<Response> f = new CompletableFuture<>();
        Pending<Response> mine = new Pending<>(id, f, progress);
        if (!request.compareAndSet(null, mine)) {
            frame.release();
            // never two requests on one worker: a bug if it happens, so make it loud
            f.completeExceptionally(new IllegalStateException(name + " already has a request in flight"));
            return f;
        }
        connection.channel().writeAndFlush(frame).addListener(w -> {
            if (!w.isSuccess() && request.compareAndSet(mine, null)) {
                f.completeExceptionally(new WorkerDiedException(name + ": writing the request failed: " + w.cause()));
            }
        });
        return f;
    }

    CompletableFuture<Pong> ping() {
        CompletableFuture<Pong> f = new CompletableFuture<>();
        if (!connection.isActive()) {
            f.completeExceptionally(new WorkerDiedException(name + " is not connected"));
            return f;
        }
        String id = "ping-" + pingCounter.incrementAndGet();
        ping.set(new Pending<>(id, f, null));
        try {
            connection.channel().writeAndFlush(WireCodec.encodePing(connection.channel().alloc(), id));
        } catch (IOException e) {
            f.completeExceptionally(e);
        }
        return f;
    }

    /** Revision 3: asks the worker to stop request {@code id} (it answers CANCELLED); false when not connected. */
    boolean sendCancel(String id) {
        if (!connection.isActive()) {
            return false;
        }
        try {
            connection.channel().writeAndFlush(WireCodec.encodeCancel(connection.channel().alloc(), id));
            return true;
        } catch (IOException e) {
            return false;
        }
    }

    void sendShutdown() {
        if (connection.isActive()) {
            try {
                connection.channel().writeAndFlush(WireCodec.encodeShutdown(connection.channel().alloc()));
            } catch (IOException ignored) {
                // the SIGTERM that follows does the job
            }
        }
    }

    /**
     * Hands a frame to whatever waits for it.
     *
     * @return null, or what is wrong with the frame (a protocol violation: the caller drops the worker)
     */
    String deliver(WorkerMessage m) {
        if (m instanceof Response r) {
            Pending<Response> p = request.get();
            if (p == null || !p.id().equals(r.id())) {
                return "response for a request that is not in flight";
            }
            if (request.compareAndSet(p, null)) {
                p.answer().complete(r);
            }
            return null;
        }
        if (m instanceof Progress pr) {
            // for the request in flight; one for a request that was answered meanwhile is stale, not a violation
            Pending<Response> p = request.get();
            if (p != null && p.progress() != null && p.id().equals(pr.id()) && pr.fraction() >= 0) {
                try {
                    p.progress().accept(pr);
                } catch (RuntimeException e) {
                    org.slf4j.LoggerFactory.getLogger(WorkerChannel.class).warn("{}: progress listener failed: {}", name,
                            e.toString());
                }
            }
            return null;
        }
        if (m instanceof Pong pong) {
            Pending<Pong> p = ping.get();
            // a pong for a ping we gave up on (timeout, shutdown) is stale, not a protocol violation
            if (p != null && p.id().equals(pong.id()) && ping.compareAndSet(p, null)) {
                p.answer().complete(pong);
            }
            return null;
        }
        return "unexpected frame of type '" + (m instanceof WorkerMessage.Unexpected u ? u.type() : "hello") + "'";
    }

    /** Fails whatever is pending (request, ping). */
    void failPending(Throwable t) {
        Pending<Response> r = request.getAndSet(null);
        if (r != null) {
            r.answer().completeExceptionally(t);
        }
        Pending<Pong> p = ping.getAndSet(null);
        if (p != null) {
            p.answer().completeExceptionally(t);
        }
    }
}
