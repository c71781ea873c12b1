package analytics.engine.workers;

import analytics.engine.api.AnalysisException;
import analytics.engine.api.AnalysisInput;
import analytics.engine.api.PythonBackend;
import analytics.engine.api.PythonBackend.PythonResult;
import analytics.engine.proto.ErrorCode;
import analytics.engine.workers.WorkerHandle.RetireReason;
import analytics.engine.workers.transport.DataFile;
import analytics.engine.workers.transport.WireCodec;
import analytics.engine.workers.transport.WorkerMessage;
import analytics.engine.workers.transport.WorkerMessage.Response;
import io.micrometer.core.instrument.Counter;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.PooledByteBufAllocator;
import java.io.IOException;
import java.nio.file.Path;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.function.BiConsumer;
import java.util.function.Consumer;
import java.util.function.Predicate;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One attempt of a request on the worker it borrowed: encode (large arrays through runtime-dir files), send,
 * await the response, decode it, map the worker's error to the API's code; then the worker goes back to the
 * pool (or out of service when the call broke it).
 */
final class WorkerCall {

    private static final Logger log = LoggerFactory.getLogger(WorkerCall.class);

    /** What the call gives back to the pool. */
    private record Lending(Consumer<WorkerHandle> giveBack, BiConsumer<WorkerHandle, RetireReason> invalidate,
                           Consumer<WorkerHandle> healthy) {
        void giveBack(WorkerHandle h) {
            giveBack.accept(h);
        }

        void invalidate(WorkerHandle h, RetireReason r) {
            invalidate.accept(h, r);
        }

        void healthy(WorkerHandle h) {
            this.healthy.accept(h);
        }
    }

    private final Path runtimeDir;
    /** Arrays of at least this many bytes go to workers that support it through a file (data_file); 0 = never. */
    private final long shmThresholdBytes;
    private final Counter sharedMemoryRequests;
    /** Continuations run here, off the socket's event loop. */
    private final Executor completions;
    private final Lending lending;
    /** True when giving this worker back keeps it (no recycling due): its return then never starts a process. */
    private final Predicate<WorkerHandle> keeps;

    WorkerCall(Path runtimeDir, long shmThresholdBytes, Counter sharedMemoryRequests, Executor completions,
               Consumer<WorkerHandle> giveBack, BiConsumer<WorkerHandle, RetireReason> invalidate,
               Consumer<WorkerHandle> healthy, Predicate<WorkerHandle> keeps) {
        this.keeps = keeps;
        this.runtimeDir = runtimeDir;
        this.shmThresholdBytes = shmThresholdBytes;
        this.sharedMemoryRequests = sharedMemoryRequests;
        this.completions = completions;
        this.lending = new Lending(giveBack, invalidate, healthy);
    }

    void run(PythonCall call, CompletableFuture<PythonResult> out, WorkerHandle h) {
        if (call.abandoned()) { // answered, or cancelled (its listener may not have run yet)
            lending.giveBack(h);
            out.completeExceptionally(new PythonCall.CancelledAttempt());
            return;
        }
        call.onWorker.set(h);
        if (call.result.isDone() && call.onWorker.compareAndSet(h, null)) { // deadline raced with the set
            lending.giveBack(h);
            out.completeExceptionally(new PythonCall.CancelledAttempt());
            return;
        }
        call.listener.running(h.slot);
        // progress frames (revision 3) only for a watched request, and only from a worker that offers them
        boolean watched = call.listener != PythonBackend.Listener.NONE && h.features.contains("progress");
        Consumer<WorkerMessage.Progress> progress = !watched ? null : p -> call.listener.progress(p.fraction(), p.detail());
        AnalysisInput in = call.input;
        ByteBuf frame;
        DataFile[] files = toFiles(h, in);
        // The files live as long as this attempt: deleted when the worker answers or fails (crash, protocol error),
        // and at the latest when the call is answered (deadline). A worker that mapped a file keeps its pages until
        // it unmaps, so deleting early never breaks a running computation.
        Runnable dropFiles = () -> {
            for (DataFile f : files) {
                if (f != null) {
                    f.delete();
                }
            }
        };
        if (files[0] != null || files[1] != null) {
            sharedMemoryRequests.increment();
            call.result.whenComplete((r, e) -> dropFiles.run());
        }
        try {
            long left = Math.max(1, TimeUnit.NANOSECONDS.toMillis(call.deadlineNanos - System.nanoTime()));
            frame = WireCodec.encodeRequest(PooledByteBufAllocator.DEFAULT, call.id, in, left, files[0], files[1], watched);
        } catch (IOException | RuntimeException e) {
            dropFiles.run();
            if (call.onWorker.compareAndSet(h, null)) {
                lending.giveBack(h);
            }
            out.completeExceptionally(new AnalysisException(ErrorCode.INTERNAL, "cannot encode the request: " + e.getMessage()));
            return;
        }
        long sent = System.nanoTime();
        call.everSent = true;
        CompletableFuture<Response> sentFuture = h.send(call.id, frame, progress);
        call.sentTo(h); // cancelled or past its deadline while the frame was prepared: the cancel follows it
        if (files[0] != null || files[1] != null) {
            // unlinking a large tmpfs file frees its pages: not on the socket's event loop
            sentFuture.whenCompleteAsync((msg, err) -> dropFiles.run(), completions);
        }
        BiConsumer<Response, Throwable> answered = (msg, err) -> {
            long rtt = (System.nanoTime() - sent) / 1000;
            boolean mine = call.onWorker.compareAndSet(h, null);
            if (err != null) {
                Throwable cause = PythonWorkerPool.unwrap(err);
                if (cause instanceof WorkerSupervisor.ShutdownException) {
                    out.completeExceptionally(cause); // engine shutting down: UNAVAILABLE, no retry
                    return;
                }
                if (mine) {
                    lending.invalidate(h, RetireReason.BROKEN);
                }
                out.completeExceptionally(cause instanceof WorkerDiedException ? cause
                        : new WorkerDiedException(h.name() + " failed: " + cause.getMessage()));
                return;
            }
            lending.healthy(h);
            if (mine) {
                call.answeredOn(h);
                lending.giveBack(h);
            }
            try {
                out.complete(toResult(h, msg, rtt));
            } catch (AnalysisException e) {
                out.completeExceptionally(e);
            }
        };
        sentFuture.whenComplete((msg, err) -> {
            // A small answer from a worker that goes straight back to the idle set is finished right here on the
            // socket's event loop: giving the worker back, building the gRPC response and handing it to grpc-java
            // cost a few microseconds, less than waking a completion thread (the hop was ~1/3 of the toll, see
            // bench/README.md "The small-request toll"). Failures, large results and a worker due for recycling
            // (its return starts a replacement process) continue on the completion executor, as before.
            if (err == null && msg.ok() && smallResult(msg) && keeps.test(h)) {
                answered.accept(msg, null);
                return;
            }
            try {
                completions.execute(() -> answered.accept(msg, err));
            } catch (RejectedExecutionException e) { // pool shut down: still answer the caller
                answered.accept(msg, err);
            }
        });
    }

    /** Results up to this many characters are answered on the event loop (see run); larger ones are copied twice
     *  more (UTF-8, gRPC framing), which belongs on a completion thread. */
    static final int INLINE_RESULT_CHARS = 16 * 1024;

    private static boolean smallResult(Response msg) {
        String json = msg.resultJson();
        return json == null || json.length() <= INLINE_RESULT_CHARS;
    }

    /**
     * The data and target arrays that go to this worker through runtime-dir files: those of at least
     * {@code shmThresholdBytes}, when the worker advertised {@code data_file}. A file that cannot be written
     * (e.g. the runtime dir's file system is full) falls back to msgpack bytes with a warning.
     */
    private DataFile[] toFiles(WorkerHandle h, AnalysisInput in) {
        DataFile[] out = new DataFile[2];
        if (shmThresholdBytes <= 0 || !h.features.contains("data_file")) {
            return out;
        }
        try {
            if (in.data() != null && 8L * in.data().length >= shmThresholdBytes) {
                out[0] = DataFile.write(runtimeDir, in.data());
            }
            if (in.target() != null && 8L * in.target().length >= shmThresholdBytes) {
                out[1] = DataFile.write(runtimeDir, in.target());
            }
        } catch (IOException | RuntimeException e) {
            log.warn("cannot write a data file in {} ({}); sending the arrays as msgpack bytes", runtimeDir, e.toString());
            for (DataFile f : out) {
                if (f != null) {
                    f.delete();
                }
            }
            return new DataFile[2];
        }
        return out;
    }

    private static PythonResult toResult(WorkerHandle h, Response r, long rttMicros) throws AnalysisException {
        if (!r.ok()) {
            throw new AnalysisException(r.error().toApi(), r.errorMessage());
        }
        if (r.resultJson() == null) {
            throw new AnalysisException(ErrorCode.INTERNAL, "Python worker " + h.slot + " answered ok without result_json");
        }
        return new PythonResult(r.resultJson(), h.slot, r.computeMicros(), rttMicros);
    }
}
