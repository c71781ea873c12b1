package analytics.engine.server;

import com.google.protobuf.MessageLite;
import io.grpc.Detachable;
import io.grpc.KnownLength;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import java.io.IOException;
import java.io.InputStream;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A request as the network thread hands it to the service: decoded already when it is small, or, from
 * {@link #DEFER_MIN_BYTES} up, its received bytes detached from gRPC (still in the network buffers) and decoded
 * by {@link #decode} on the thread that computes it.
 *
 * <p>Why: gRPC parses a unary request on the thread that delivers it, and Analyze is delivered on the
 * connection's network thread (see {@code EngineServer}). Decoding 8 MB there (~0.9 ms) stopped that thread
 * from reading its connections: a small call sharing a channel with two callers of 10^6-point requests waited
 * 4.5–5.4 ms (p50) instead of 0.4–0.9 ms, and at 4 concurrent 10^6-point requests on one connection 10–13 %
 * of both cores sat idle, 7–8 % now (bench/README.md, "Tenth pass"). Small requests, answered on the network
 * thread, are decoded at once as before.
 *
 * <p>A deferred request owns its buffers until {@link #decode} or {@link #release}; exactly one of them must
 * be called, once.
 */
public final class Received<M extends MessageLite> {

    /** Requests of at least this many bytes are decoded where they are computed (all are past the inline limits). */
    static final int DEFER_MIN_BYTES = 1 << 20;
    /**
     * At most this many bytes wait undecoded at a time (one bigger request may, when none waits); past it a big
     * request is decoded on arrival as before. A waiting request holds network buffers that also carry other
     * streams' frames (a connection interleaves them), so it keeps more memory than its own size: with 64 MiB
     * allowed, 16 concurrent 10^6-point requests peaked at 365–605 MiB instead of 309–415; with 8 MiB (one such
     * request waiting) at 330–335, with the same throughput at 4 concurrent (bench/README.md, "Tenth pass").
     */
    static final long PENDING_MAX_BYTES = 8L << 20;

    private final PackedDoublesMarshaller<M> decoder;
    private final long size;
    private final AtomicLong pending;
    private BulkMessage<M> decoded;
    private InputStream detached;

    private Received(PackedDoublesMarshaller<M> decoder, long size, BulkMessage<M> decoded, InputStream detached,
                     AtomicLong pending) {
        this.decoder = decoder;
        this.size = size;
        this.decoded = decoded;
        this.detached = detached;
        this.pending = pending;
    }

    /** The request's size in bytes as received; -1 when the stream did not say. */
    public long size() {
        return size;
    }

    /** True when the request was decoded on arrival; false while its bytes wait for {@link #decode}. */
    public boolean isDecoded() {
        return decoded != null;
    }

    /**
     * The decoded request: decodes a deferred one on the calling thread and releases its network buffers.
     *
     * @throws io.grpc.StatusRuntimeException as {@link PackedDoublesMarshaller#parse} for malformed bytes
     */
    public BulkMessage<M> decode() {
        if (decoded == null) {
            InputStream in = detached;
            if (in == null) {
                throw new IllegalStateException("request already released, or its decode failed");
            }
            detached = null;
            pending.addAndGet(-size);
            try (in) {
                decoded = decoder.parse(in);
            } catch (IOException e) { // from close(), which for gRPC's buffers does not throw
                throw Status.INTERNAL.withDescription("cannot release request buffers").withCause(e).asRuntimeException();
            }
        }
        return decoded;
    }

    /** Gives a deferred request's network buffers back without decoding it (the call could not be run). */
    public void release() {
        InputStream in = detached;
        detached = null;
        if (in != null) {
            pending.addAndGet(-size);
            try {
                in.close();
            } catch (IOException ignored) {
                // gRPC's buffer streams do not throw on close
            }
        }
    }

    /** The request marshaller: {@code decoder}'s, deferring big requests that gRPC lets it detach. */
    static final class RequestMarshaller<M extends MessageLite> implements MethodDescriptor.Marshaller<Received<M>> {
        private final PackedDoublesMarshaller<M> decoder;
        private final long pendingMax;
        /** Bytes of the requests detached and not yet decoded or released. */
        private final AtomicLong pending = new AtomicLong();
        /** Requests detached so far (tests: that gRPC's streams really let big requests be detached). */
        private final AtomicLong deferred = new AtomicLong();

        RequestMarshaller(PackedDoublesMarshaller<M> decoder) {
            this(decoder, PENDING_MAX_BYTES);
        }

        RequestMarshaller(PackedDoublesMarshaller<M> decoder, long pendingMax) {
            this.decoder = decoder;
            this.pendingMax = pendingMax;
        }

        long pendingBytes() {
            return pending.get();
        }

        long deferredCount() {
            return deferred.get();
        }

        /** Counts {@code size} bytes as waiting if they fit under the bound (or nothing waits). */
        private boolean reserve(long size) {
            while (true) {
                long p = pending.get();
                if (p > 0 && p + size > pendingMax) {
                    return false;
                }
                if (pending.compareAndSet(p, p + size)) {
                    return true;
                }
            }
        }

        @Override
        public InputStream stream(Received<M> value) {
            return decoder.stream(value.decode());
        }

        @Override
        public Received<M> parse(InputStream stream) {
            try {
                // gRPC's own message streams are Detachable and KnownLength; a compressed message (a stream that
                // decompresses as it is read) is neither, and is decoded at once.
                long size = stream instanceof KnownLength ? stream.available() : -1;
                if (stream instanceof Detachable d && size >= DEFER_MIN_BYTES && reserve(size)) {
                    deferred.incrementAndGet();
                    return new Received<>(decoder, size, null, d.detach(), pending);
                }
                return new Received<>(decoder, size, decoder.parse(stream), null, pending);
            } catch (IOException e) {
                throw Status.INTERNAL.withDescription("cannot read request: " + e.getMessage()).withCause(e)
                        .asRuntimeException();
            }
        }
    }
}
