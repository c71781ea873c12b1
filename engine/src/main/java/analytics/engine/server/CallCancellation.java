package analytics.engine.server;

import analytics.engine.api.Cancellation;
import com.google.common.util.concurrent.MoreExecutors;
import io.grpc.Context;
import io.grpc.Deadline;

/**
 * Turns the end of a gRPC call into a {@link Cancellation} for the work it started. grpc-java cancels the
 * call's {@link Context} when the client cancels, when the call's connection closes (RST_STREAM, GOAWAY,
 * TCP close) and when the call's deadline passes; it also cancels it — with no cause — when the call
 * completes normally, which is not a cancellation.
 */
final class CallCancellation {

    private CallCancellation() {
    }

    /** A Cancellation tied to {@code ctx} (the call's context: {@code Context.current()} in a handler). */
    static Cancellation of(Context ctx) {
        Cancellation c = new Cancellation();
        ctx.addListener(x -> {
            if (x.cancellationCause() == null) {
                return; // the call ended normally
            }
            Deadline d = x.getDeadline();
            if (d != null && d.isExpired()) {
                c.cancel(Cancellation.Kind.DEADLINE, "the call's deadline passed");
            } else {
                c.cancel(Cancellation.Kind.CANCELLED, "the client cancelled the call or its connection closed");
            }
        }, MoreExecutors.directExecutor());
        return c;
    }
}
