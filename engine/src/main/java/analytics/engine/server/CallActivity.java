package analytics.engine.server;

import io.grpc.ForwardingServerCallListener.SimpleForwardingServerCallListener;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Counts the analytics gRPC calls that are open (from their headers to their end, so an 8 MB request whose
 * body is still arriving counts) and the calls started so far. {@link IdleTrim} reads both: it gives memory
 * back only when no call is open and none started for a while. The dispatcher's in-flight gauge is not
 * enough for that: it counts a request only once its body has been received and decoded.
 */
public final class CallActivity implements ServerInterceptor {

    private final AtomicInteger open = new AtomicInteger();
    private final AtomicLong started = new AtomicLong();

    /** Calls between their headers and their completion or cancellation. */
    public int open() {
        return open.get();
    }

    /** Calls started since the server started (only ever grows). */
    public long started() {
        return started.get();
    }

    @Override
    public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers,
                                                       ServerCallHandler<Q, R> next) {
        started.incrementAndGet();
        open.incrementAndGet();
        ServerCall.Listener<Q> delegate;
        try {
            delegate = next.startCall(call, headers);
        } catch (RuntimeException | Error e) {
            open.decrementAndGet(); // no listener: the transport will not report this call's end to us
            throw e;
        }
        return new SimpleForwardingServerCallListener<>(delegate) {
            private boolean ended; // the transport calls onComplete or onCancel once, serially; guard anyway

            private void end() {
                if (!ended) {
                    ended = true;
                    open.decrementAndGet();
                }
            }

            @Override
            public void onComplete() {
                try {
                    super.onComplete();
                } finally {
                    end();
                }
            }

            @Override
            public void onCancel() {
                try {
                    super.onCancel();
                } finally {
                    end();
                }
            }
        };
    }
}
