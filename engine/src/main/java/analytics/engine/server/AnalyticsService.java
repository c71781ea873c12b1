package analytics.engine.server;

import analytics.engine.dispatch.AlgorithmSpec;
import analytics.engine.api.Cancellation;
import analytics.engine.dispatch.Dispatcher;
import analytics.engine.proto.AlgorithmInfo;
import analytics.engine.proto.AnalysisRequest;
import analytics.engine.proto.AnalysisResponse;
import analytics.engine.proto.AnalyticsEngineGrpc;
import analytics.engine.proto.BatchAnalysisRequest;
import analytics.engine.proto.Empty;
import analytics.engine.proto.HealthCheckRequest;
import analytics.engine.proto.HealthCheckResponse;
import analytics.engine.proto.ProgressUpdate;
import analytics.engine.proto.StreamChunk;
import analytics.engine.proto.SupportedAlgorithmsResponse;
import analytics.engine.api.PythonBackend;
import io.grpc.Context;
import io.grpc.Deadline;
import io.grpc.MethodDescriptor;
import io.grpc.ServerMethodDefinition;
import io.grpc.ServerServiceDefinition;
import io.grpc.Status;
import io.grpc.stub.ServerCalls;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Supplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/** The v7 {@code analytics.AnalyticsEngine} service. All analysis goes through the {@link Dispatcher}. */
final class AnalyticsService extends AnalyticsEngineGrpc.AnalyticsEngineImplBase {

    private static final Logger LOG = LoggerFactory.getLogger(AnalyticsService.class);

    private final Dispatcher dispatcher;
    private final ExecutorService compute;
    private final java.util.concurrent.Executor offload;
    private final int maxBatchSize;
    private final int batchConcurrency;
    private final String version;
    private final Supplier<Map<String, String>> capabilities;
    private final Supplier<Boolean> healthy;
    private final StreamIngest streamIngest;

    AnalyticsService(Dispatcher dispatcher, ExecutorService compute, java.util.concurrent.Executor offload,
                     int maxBatchSize, int batchConcurrency,
                     String version, Supplier<Boolean> healthy, Supplier<Map<String, String>> capabilities,
                     StreamIngest streamIngest) {
        this.dispatcher = dispatcher;
        this.compute = compute;
        this.offload = offload;
        this.maxBatchSize = maxBatchSize;
        this.batchConcurrency = batchConcurrency;
        this.version = version;
        this.healthy = healthy;
        this.capabilities = capabilities;
        this.streamIngest = streamIngest;
    }

    /**
     * Milliseconds left before the call's gRPC deadline, rounded up, so that the engine's own timer for it
     * never fires before the deadline has passed (see {@link #respond}); -1 without a deadline.
     */
    private static long remainingMs() {
        Deadline d = Context.current().getDeadline();
        if (d == null) {
            return -1;
        }
        long ns = d.timeRemaining(TimeUnit.NANOSECONDS);
        return ns <= 0 ? 0 : (ns + 999_999) / 1_000_000;
    }

    /**
     * Analyze is called on the network thread (see EngineServer's call executor): cheap requests are
     * answered right there, saving two thread hand-offs; anything that may take longer or block (Python,
     * big series) moves to a worker thread first.
     */
    @Override
    public void analyze(AnalysisRequest request, StreamObserver<AnalysisResponse> out) {
        if (dispatcher.isCheap(request)) {
            // a small Python request is cheap to start but may run long: it is stopped like any other when the call ends
            analyzeNow(request, out, remainingMs(), CallCancellation.of(Context.current()));
        } else {
            toCallThread((remaining, cancel) -> analyzeNow(request, out, remaining, cancel), out, () -> { });
        }
    }

    /** The rest of a call, run on a call thread: the call's time left and its cancellation, both taken before. */
    private interface CallRest {
        void run(long remainingMs, Cancellation cancel);
    }

    /** Moves the rest of a call to a call thread, in the call's gRPC context; UNAVAILABLE (after {@code refused}) when shutting down. */
    private void toCallThread(CallRest rest, StreamObserver<AnalysisResponse> out, Runnable refused) {
        long remaining = remainingMs();
        Context ctx = Context.current();
        Cancellation cancel = CallCancellation.of(ctx);
        try {
            offload.execute(ctx.wrap(() -> rest.run(remaining, cancel)));
        } catch (java.util.concurrent.RejectedExecutionException e) {
            refused.run();
            out.onError(Status.UNAVAILABLE.withDescription("engine is shutting down").asRuntimeException());
        }
    }

    /**
     * Analyze as the server receives it (see {@link #bindBulk}): a big request still in its network buffers,
     * decoded on the thread that computes it so that this one goes back to reading the connection
     * (see {@link Received}); a small one decoded already.
     */
    void analyze(Received<AnalysisRequest> received, StreamObserver<AnalysisResponse> out) {
        if (received.isDecoded()) {
            analyze(received.decode(), out);
            return;
        }
        toCallThread((remaining, cancel) -> {
            BulkMessage<AnalysisRequest> bulk;
            try {
                bulk = received.decode();
            } catch (io.grpc.StatusRuntimeException e) {
                // Malformed: the status gRPC gives a client when a request fails to parse on arrival.
                Throwable why = e.getCause() != null ? e.getCause() : e;
                LOG.warn("Analyze request of {} bytes rejected: {}", received.size(), why.getMessage());
                out.onError(Status.UNKNOWN.withDescription("Application error processing RPC").asRuntimeException());
                return;
            }
            analyzeNow(bulk.message(), bulk.array(0), bulk.array(1), bulk.decodeNanos(), out, remaining, cancel);
        }, out, received::release);
    }

    /** Analyze with data and target decoded in bulk. */
    void analyze(BulkMessage<AnalysisRequest> bulk, StreamObserver<AnalysisResponse> out) {
        AnalysisRequest meta = bulk.message();
        double[] data = bulk.array(0);
        double[] target = bulk.array(1);
        long decodeNanos = bulk.decodeNanos();
        if (dispatcher.isCheap(meta, data.length + target.length)) {
            // a small Python request is cheap to start but may run long: it is stopped like any other when the call ends
            analyzeNow(meta, data, target, decodeNanos, out, remainingMs(), CallCancellation.of(Context.current()));
        } else {
            toCallThread((remaining, cancel) -> analyzeNow(meta, data, target, decodeNanos, out, remaining, cancel),
                    out, () -> { });
        }
    }

    /** Field numbers lifted out of AnalysisRequest by the server's marshaller: data, target. */
    static final int[] REQUEST_ARRAYS = {AnalysisRequest.DATA_FIELD_NUMBER, AnalysisRequest.TARGET_FIELD_NUMBER};
    /** Field numbers lifted out of StreamChunk: data. */
    static final int[] CHUNK_ARRAYS = {StreamChunk.DATA_FIELD_NUMBER};

    static PackedDoublesMarshaller<AnalysisRequest> requestMarshaller() {
        return new PackedDoublesMarshaller<>(AnalysisRequest.parser(), REQUEST_ARRAYS, b -> {
            AnalysisRequest.Builder r = b.message().toBuilder();
            for (double v : b.array(0)) {
                r.addData(v);
            }
            for (double v : b.array(1)) {
                r.addTarget(v);
            }
            return r.build();
        });
    }

    static PackedDoublesMarshaller<StreamChunk> chunkMarshaller() {
        return new PackedDoublesMarshaller<>(StreamChunk.parser(), CHUNK_ARRAYS, b -> {
            StreamChunk.Builder c = b.message().toBuilder();
            for (double v : b.array(0)) {
                c.addData(v);
            }
            return c.build();
        });
    }

    /**
     * The service as the server registers it: the generated definition, except that Analyze and
     * AnalyzeStream receive their requests through {@link PackedDoublesMarshaller} (the packed doubles
     * decoded in bulk into the arrays the engine computes on; Analyze's through {@link Received}, which
     * leaves a big request's decode to the thread that computes it). Same method names, same schema descriptor
     * (so reflection is unchanged), same response marshallers.
     */
    ServerServiceDefinition bindBulk() {
        ServerServiceDefinition generated = bindService();
        io.grpc.ServiceDescriptor gsd = generated.getServiceDescriptor();
        MethodDescriptor<AnalysisRequest, AnalysisResponse> analyzeGen = AnalyticsEngineGrpc.getAnalyzeMethod();
        MethodDescriptor<StreamChunk, AnalysisResponse> streamGen = AnalyticsEngineGrpc.getAnalyzeStreamMethod();
        MethodDescriptor<Received<AnalysisRequest>, AnalysisResponse> analyzeBulk = analyzeGen.toBuilder(
                new Received.RequestMarshaller<>(requestMarshaller()), analyzeGen.getResponseMarshaller()).build();
        MethodDescriptor<BulkMessage<StreamChunk>, AnalysisResponse> streamBulk =
                streamGen.toBuilder(chunkMarshaller(), streamGen.getResponseMarshaller()).build();
        io.grpc.ServiceDescriptor.Builder sd = io.grpc.ServiceDescriptor.newBuilder(gsd.getName())
                .setSchemaDescriptor(gsd.getSchemaDescriptor());
        java.util.List<ServerMethodDefinition<?, ?>> methods = new java.util.ArrayList<>();
        for (ServerMethodDefinition<?, ?> m : generated.getMethods()) {
            String name = m.getMethodDescriptor().getFullMethodName();
            if (name.equals(analyzeGen.getFullMethodName())) {
                sd.addMethod(analyzeBulk);
                methods.add(ServerMethodDefinition.create(analyzeBulk, ServerCalls.asyncUnaryCall(this::analyze)));
            } else if (name.equals(streamGen.getFullMethodName())) {
                sd.addMethod(streamBulk);
                methods.add(ServerMethodDefinition.create(streamBulk,
                        ServerCalls.asyncClientStreamingCall(streamIngest::openBulk)));
            } else {
                sd.addMethod(m.getMethodDescriptor());
                methods.add(m);
            }
        }
        ServerServiceDefinition.Builder b = ServerServiceDefinition.builder(sd.build());
        for (ServerMethodDefinition<?, ?> m : methods) {
            b.addMethod(m);
        }
        return b.build();
    }

    private void analyzeNow(AnalysisRequest request, StreamObserver<AnalysisResponse> out, long remainingMs,
                            Cancellation cancel) {
        respond(request, dispatcher.analyze(request, remainingMs, cancel, PythonBackend.Listener.NONE), out);
    }

    private void analyzeNow(AnalysisRequest meta, double[] data, double[] target, long decodeNanos,
                            StreamObserver<AnalysisResponse> out, long remainingMs, Cancellation cancel) {
        respond(meta, dispatcher.analyze(meta, data, target, decodeNanos, remainingMs, cancel,
                PythonBackend.Listener.NONE), out);
    }

    /**
     * Answers a unary Analyze. A request stopped because the call's own gRPC deadline passed ends the call with
     * {@code DEADLINE_EXCEEDED}, as the client's stub reports it anyway when its own timer fires first: which of
     * the two timers fires first is a race, and the client must not see a different answer for it. A request
     * stopped by its {@code timeout_ms} (the deadline still ahead) is answered in band, {@code TIMEOUT}.
     */
    private static void respond(AnalysisRequest request, java.util.concurrent.CompletableFuture<AnalysisResponse> answer,
                                StreamObserver<AnalysisResponse> out) {
        Deadline deadline = Context.current().getDeadline();
        answer.whenComplete((resp, err) -> {
            if (err != null) { // the dispatcher never fails its future; this is a last line of defence
                LOG.error("request {}: unexpected failure", request.getRequestId(), err);
                out.onError(Status.INTERNAL.withDescription("internal error").asRuntimeException());
                return;
            }
            if (!resp.getSuccess() && resp.getErrorCode() == analytics.engine.proto.ErrorCode.TIMEOUT
                    && deadline != null && deadline.isExpired()) {
                try {
                    out.onError(Status.DEADLINE_EXCEEDED.withDescription(resp.getErrorMessage()).asRuntimeException());
                } catch (IllegalStateException | io.grpc.StatusRuntimeException e) {
                    LOG.debug("request {}: call already ended at its deadline", resp.getRequestId());
                }
                return;
            }
            try {
                out.onNext(resp);
                out.onCompleted();
            } catch (IllegalStateException | io.grpc.StatusRuntimeException e) {
                LOG.debug("request {}: client went away before the answer ({})", resp.getRequestId(), e.toString());
            }
        });
    }

    @Override
    public void batchAnalyze(BatchAnalysisRequest request, StreamObserver<AnalysisResponse> out) {
        int n = request.getRequestsCount();
        if (n > maxBatchSize) {
            out.onError(Status.INVALID_ARGUMENT.withDescription("batch '" + request.getBatchId() + "' has " + n
                    + " requests; the limit is " + maxBatchSize + " (setting max_batch_size)").asRuntimeException());
            return;
        }
        if (n == 0) {
            out.onCompleted();
            return;
        }
        new BatchRun(request, (ServerCallStreamObserver<AnalysisResponse>) out, remainingMs(),
                CallCancellation.of(Context.current())).start();
    }

    /**
     * One BatchAnalyze call: at most {@code batchConcurrency} items run at once; each response is sent as
     * soon as it is ready; a failing item is a {@code success=false} response, never a failed stream.
     */
    private final class BatchRun {
        private final BatchAnalysisRequest batch;
        private final ServerCallStreamObserver<AnalysisResponse> out;
        private final long deadlineAtNanos;
        private final AtomicInteger next = new AtomicInteger();
        private final AtomicInteger done = new AtomicInteger();
        private final AtomicBoolean finished = new AtomicBoolean();
        /** The call's cancellation, shared by every item: cancelling the call cancels them all. */
        private final Cancellation cancel;

        BatchRun(BatchAnalysisRequest batch, ServerCallStreamObserver<AnalysisResponse> out, long remainingMs,
                 Cancellation cancel) {
            this.batch = batch;
            this.out = out;
            this.cancel = cancel;
            this.deadlineAtNanos = remainingMs < 0 ? -1 : System.nanoTime() + remainingMs * 1_000_000L;
        }

        void start() {
            int first = Math.min(batchConcurrency, batch.getRequestsCount());
            for (int i = 0; i < first; i++) {
                launchNext();
            }
        }

        private void launchNext() {
            int i = next.getAndIncrement();
            if (i >= batch.getRequestsCount()) {
                return;
            }
            if (out.isCancelled() || cancel.isCancelled()) {
                return; // items not started yet never start
            }
            AnalysisRequest item = batch.getRequests(i);
            long remaining = deadlineAtNanos < 0 ? -1 : Math.max(0, (deadlineAtNanos - System.nanoTime()) / 1_000_000L);
            try {
                compute.execute(() -> dispatcher.analyze(item, remaining, cancel, PythonBackend.Listener.NONE)
                        .whenComplete((resp, err) -> onItemDone(resp)));
            } catch (java.util.concurrent.RejectedExecutionException e) {
                onItemDone(AnalysisResponse.newBuilder().setRequestId(item.getRequestId()).setSuccess(false)
                        .setErrorCode(analytics.engine.proto.ErrorCode.UNAVAILABLE)
                        .setErrorMessage("engine is shutting down").build());
            }
        }

        private void onItemDone(AnalysisResponse resp) {
            if (resp != null) {
                synchronized (out) {
                    if (!out.isCancelled() && !finished.get()) {
                        out.onNext(resp);
                    }
                }
            }
            if (done.incrementAndGet() == batch.getRequestsCount()) {
                synchronized (out) {
                    if (finished.compareAndSet(false, true) && !out.isCancelled()) {
                        out.onCompleted();
                    }
                }
            } else {
                launchNext();
            }
        }
    }

    /**
     * AnalyzeWithProgress: the same analysis as Analyze, with updates while it waits and runs (see
     * {@link ProgressStream}); the last message carries the AnalysisResponse.
     */
    @Override
    public void analyzeWithProgress(AnalysisRequest request, StreamObserver<ProgressUpdate> out) {
        ServerCallStreamObserver<ProgressUpdate> obs = (ServerCallStreamObserver<ProgressUpdate>) out;
        // the work hears of a cancellation through the Context; this handler only stops onNext from throwing
        obs.setOnCancelHandler(() -> { });
        AnalysisRequest req = request.getRequestId().isEmpty()
                ? request.toBuilder().setRequestId(java.util.UUID.randomUUID().toString()).build() : request;
        ProgressStream progress = new ProgressStream(obs, req.getRequestId());
        long remaining = remainingMs();
        Context ctx = Context.current();
        Cancellation cancel = CallCancellation.of(ctx);
        try {
            Runnable run = () -> dispatcher.analyze(req, remaining, cancel, progress).whenComplete((resp, err) -> {
                if (err != null) { // the dispatcher never fails its future; last line of defence
                    LOG.error("request {}: unexpected failure", req.getRequestId(), err);
                    obs.onError(Status.INTERNAL.withDescription("internal error").asRuntimeException());
                    return;
                }
                progress.finish(resp);
            });
            offload.execute(ctx.wrap(run));
        } catch (java.util.concurrent.RejectedExecutionException e) {
            obs.onError(Status.UNAVAILABLE.withDescription("engine is shutting down").asRuntimeException());
        }
    }

    @Override
    public void healthCheck(HealthCheckRequest request, StreamObserver<HealthCheckResponse> out) {
        out.onNext(HealthCheckResponse.newBuilder()
                .setHealthy(healthy.get())
                .setVersion(version)
                .putAllCapabilities(capabilities.get())
                .build());
        out.onCompleted();
    }

    @Override
    public void getSupportedAlgorithms(Empty request, StreamObserver<SupportedAlgorithmsResponse> out) {
        SupportedAlgorithmsResponse.Builder b = SupportedAlgorithmsResponse.newBuilder();
        for (AlgorithmSpec s : dispatcher.registry().all()) {
            b.addAlgorithms(AlgorithmInfo.newBuilder()
                    .setName(s.name())
                    .setDescription(s.description())
                    .addAllImplementations(s.implementations())
                    .addAllRequiredParams(s.requiredParams())
                    .addAllOptionalParams(s.optionalParams()));
        }
        out.onNext(b.build());
        out.onCompleted();
    }

    @Override
    public StreamObserver<analytics.engine.proto.StreamChunk> analyzeStream(StreamObserver<AnalysisResponse> out) {
        return streamIngest.open(out, CallCancellation.of(Context.current()));
    }
}
