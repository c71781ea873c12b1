package analytics.engine.server;

import analytics.engine.dispatch.AlgorithmSpec;
import analytics.engine.api.AnalysisException;
import analytics.engine.api.Cancellation;
import analytics.engine.api.PythonBackend;
import analytics.engine.dispatch.Dispatcher;
import analytics.engine.dispatch.ResultJson;
import analytics.engine.metrics.EngineMetrics;
import analytics.engine.proto.AnalysisRequest;
import analytics.engine.proto.AnalysisResponse;
import analytics.engine.proto.ErrorCode;
import analytics.engine.proto.ExecutionMetadata;
import analytics.engine.proto.StreamChunk;
import analytics.engine.stats.NativeKernel;
import analytics.engine.stats.streaming.StreamAccumulator;
import analytics.engine.stats.streaming.StreamingQuantiles;
import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import java.util.Map;
import java.util.UUID;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.slf4j.MDC;

/**
 * AnalyzeStream: the client-streaming way in for series larger than one gRPC message. The first chunk
 * names the algorithm, params and options (later chunks may repeat the algorithm but not change it);
 * every chunk may carry data.
 *
 * <ul>
 *   <li>Streamable statistics ({@link StreamAccumulator#STREAMABLE}) are computed as the chunks arrive,
 *       in constant memory for the moments and in at most {@code stream_exact_max_points} values (then a
 *       KLL sketch) for the quantiles. They always run natively.
 *   <li>Everything else (mode, the Python algorithms) needs the whole series: the chunks are gathered
 *       up to {@code stream_max_points} values and the result is the one of an {@code Analyze} call.
 * </ul>
 * A stream that breaks a rule (unknown algorithm, a NaN under nan_policy=raise, too many points for a
 * gathering algorithm) is answered at once with {@code success=false} and the call is closed; the
 * client's remaining chunks are discarded.
 */
public final class StreamIngest {

    private static final Logger LOG = LoggerFactory.getLogger(StreamIngest.class);

    /** Limits of the streaming path (settings stream_max_points, stream_exact_max_points, stream_sketch_k). */
    public record Limits(long maxPoints, long exactMaxPoints, int sketchK, long exactTotalBytes) {
    }

    private final Dispatcher dispatcher;
    private final Map<String, NativeKernel> kernels;
    private final EngineMetrics metrics;
    private final Limits limits;
    private final StreamingQuantiles.Budget exactBudget;

    public StreamIngest(Dispatcher dispatcher, Map<String, NativeKernel> kernels, EngineMetrics metrics,
                        Limits limits) {
        this.dispatcher = dispatcher;
        this.kernels = kernels;
        this.metrics = metrics;
        this.limits = limits;
        this.exactBudget = new StreamingQuantiles.Budget(limits.exactTotalBytes());
        io.micrometer.core.instrument.Gauge.builder("analytics.stream.exact.reserved", exactBudget,
                        b -> (double) (b.total() - b.free()))
                .description("Bytes reserved now by AnalyzeStream calls for exact quantiles (limit: "
                        + "stream_exact_total_mb)")
                .baseUnit("bytes")
                .register(metrics.registry());
    }

    /** Bytes of the engine-wide exact-quantile budget not in use now. */
    public long exactBudgetFree() {
        return exactBudget.free();
    }

    StreamObserver<StreamChunk> open(StreamObserver<AnalysisResponse> out) {
        return new Call(out, new Cancellation());
    }

    /** {@code cancel}: the call's cancellation (a Python algorithm on the gathered series is stopped by it). */
    StreamObserver<StreamChunk> open(StreamObserver<AnalysisResponse> out, Cancellation cancel) {
        return new Call(out, cancel);
    }

    /**
     * AnalyzeStream as the server receives it: each chunk's data already decoded in bulk. Called in the call's
     * Context: its cancellation (a Python algorithm on the gathered series is stopped by it) is bound here.
     */
    StreamObserver<BulkMessage<StreamChunk>> openBulk(StreamObserver<AnalysisResponse> out) {
        Call call = new Call(out, CallCancellation.of(io.grpc.Context.current()));
        return new StreamObserver<>() {
            @Override
            public void onNext(BulkMessage<StreamChunk> chunk) {
                call.onChunk(chunk.message(), chunk.array(0));
            }

            @Override
            public void onError(Throwable t) {
                call.onError(t);
            }

            @Override
            public void onCompleted() {
                call.onCompleted();
            }
        };
    }

    /** One AnalyzeStream call; gRPC delivers its callbacks one at a time. */
    private final class Call implements StreamObserver<StreamChunk> {
        private final StreamObserver<AnalysisResponse> out;
        private final long start = System.nanoTime();
        private StreamChunk header;
        private String requestId;
        private String algorithm = "";
        private AlgorithmSpec spec;
        private EngineMetrics.InFlight inFlight;
        private StreamAccumulator acc;          // streamable statistics
        private AnalysisRequest.Builder gather; // everything else: the header's fields
        private double[] gatheredData = new double[0]; // ... and the data, values 0..gathered-1
        private long gathered;
        private long chunks;
        private boolean closed;

        private final Cancellation cancel;

        Call(StreamObserver<AnalysisResponse> out, Cancellation cancel) {
            this.out = out;
            this.cancel = cancel;
        }

        @Override
        public void onNext(StreamChunk chunk) {
            double[] data = new double[chunk.getDataCount()];
            for (int i = 0; i < data.length; i++) {
                data[i] = chunk.getData(i);
            }
            onChunk(chunk, data);
        }

        /** One chunk: its fields but data from {@code meta}, its data from {@code data}. */
        void onChunk(StreamChunk meta, double[] data) {
            StreamChunk chunk = meta;
            if (closed) {
                return;
            }
            chunks++;
            try {
                if (header == null) {
                    begin(chunk);
                } else if (!chunk.getAlgorithm().isEmpty() && !chunk.getAlgorithm().trim().equals(algorithm)) {
                    throw AnalysisException.invalid("chunk " + chunks + " names algorithm '"
                            + Dispatcher.printable(chunk.getAlgorithm()) + "' but the stream started as '"
                            + Dispatcher.printable(algorithm) + "'; only the first chunk sets it");
                }
                int m = data.length;
                if (acc != null) {
                    for (int i = 0; i < m; i++) {
                        acc.add(data[i]);
                    }
                } else {
                    if (gathered + m > limits.maxPoints()) {
                        throw AnalysisException.invalid(algorithm + " needs the whole series in memory and the "
                                + "stream sent more than " + limits.maxPoints() + " data points (" + (gathered + m)
                                + " so far; setting stream_max_points = " + limits.maxPoints() + "). Statistics "
                                + "that stream in constant memory: " + String.join(", ",
                                new java.util.TreeSet<>(StreamAccumulator.STREAMABLE)));
                    }
                    if (gathered + m > gatheredData.length) {
                        gatheredData = java.util.Arrays.copyOf(gatheredData,
                                (int) Math.min(Math.min(limits.maxPoints(), Integer.MAX_VALUE - 8),
                                        Math.max(gathered + m, gatheredData.length * 2L)));
                    }
                    System.arraycopy(data, 0, gatheredData, (int) gathered, m);
                    gathered += m;
                }
            } catch (AnalysisException e) {
                fail(e);
            } catch (RuntimeException e) {
                LOG.error("request {}: internal error in AnalyzeStream", requestId, e);
                fail(new AnalysisException(ErrorCode.INTERNAL, "internal error: " + e.getClass().getSimpleName()
                        + " (details in the engine log, request_id " + requestId + ")"));
            }
        }

        private void begin(StreamChunk chunk) throws AnalysisException {
            header = chunk;
            requestId = chunk.getRequestId().isEmpty() ? UUID.randomUUID().toString() : chunk.getRequestId();
            algorithm = chunk.getAlgorithm().trim();
            spec = dispatcher.registry().get(algorithm);
            if (spec == null) {
                throw new AnalysisException(ErrorCode.UNKNOWN_ALGORITHM, dispatcher.unknownMessage(algorithm));
            }
            if (spec.nativeImpl() && StreamAccumulator.STREAMABLE.contains(spec.name())) {
                acc = new StreamAccumulator(spec.name(), chunk.getParamsMap(), kernels, spec.minPoints(),
                        limits.exactMaxPoints(), limits.sketchK(), exactBudget);
                inFlight = metrics.started(); // gathered streams are counted by the dispatcher instead
                return;
            }
            if (!spec.nativeImpl()) {
                boolean allowPython = !chunk.hasOptions() || chunk.getOptions().getAllowPython();
                if (!allowPython) {
                    throw new AnalysisException(ErrorCode.UNAVAILABLE, "algorithm '" + spec.name()
                            + "' is implemented only in Python, and options.allow_python is false");
                }
                if (dispatcher.python() == null) {
                    throw new AnalysisException(ErrorCode.UNAVAILABLE, "algorithm '" + spec.name()
                            + "' needs the Python workers, and this engine runs with workers = 0");
                }
            }
            gather = AnalysisRequest.newBuilder().setRequestId(requestId).setAlgorithm(algorithm)
                    .putAllParams(chunk.getParamsMap());
            if (chunk.hasOptions()) {
                gather.setOptions(chunk.getOptions());
            }
        }

        @Override
        public void onError(Throwable t) {
            // the client cancelled or the connection broke: nothing to answer, drop the state
            if (acc != null) {
                acc.close();
            }
            acc = null;
            gather = null;
            gatheredData = null;
            if (inFlight != null) {
                inFlight.finished(metricName(), "native", "CANCELLED", System.nanoTime() - start);
            }
            closed = true;
        }

        @Override
        public void onCompleted() {
            if (closed) {
                return;
            }
            if (header == null) {
                closed = true;
                out.onError(Status.INVALID_ARGUMENT.withDescription("empty stream: the first message must name "
                        + "the algorithm").asRuntimeException());
                return;
            }
            if (acc != null) {
                try {
                    long t0 = System.nanoTime();
                    StreamAccumulator.Result r = acc.finish();
                    String json = ResultJson.write(r.value());
                    AnalysisResponse.Builder b = AnalysisResponse.newBuilder().setRequestId(requestId)
                            .setSuccess(true).setResultJson(json);
                    // metadata always, like Analyze (the earlier engine sent it on every answer)
                    ExecutionMetadata.Builder m = metadata("native");
                    m.putStats("finish_us", Long.toString((System.nanoTime() - t0) / 1000));
                    m.putAllStats(r.stats());
                    b.setMetadata(m);
                    acc = null;
                    reply(b.build(), "native");
                } catch (AnalysisException e) {
                    fail(e);
                } catch (RuntimeException e) {
                    LOG.error("request {}: internal error finishing AnalyzeStream", requestId, e);
                    fail(new AnalysisException(ErrorCode.INTERNAL, "internal error: "
                            + e.getClass().getSimpleName() + " (details in the engine log, request_id "
                            + requestId + ")"));
                }
                return;
            }
            // a whole-series algorithm: analyse the gathered data like one Analyze call
            AnalysisRequest req = gather.build();
            double[] data = gathered == gatheredData.length ? gatheredData
                    : java.util.Arrays.copyOf(gatheredData, (int) gathered);
            gather = null;
            gatheredData = null;
            closed = true;
            dispatcher.analyze(req, data, new double[0], -1, cancel, PythonBackend.Listener.NONE).whenComplete((resp, err) -> {
                if (err != null || resp == null) {
                    out.onError(Status.INTERNAL.withDescription("dispatch failed").asRuntimeException());
                    return;
                }
                AnalysisResponse.Builder b = resp.toBuilder();
                if (b.hasMetadata()) {
                    b.getMetadataBuilder().putStats("stream_chunks", Long.toString(chunks));
                }
                out.onNext(b.build());
                out.onCompleted();
            });
        }

        private ExecutionMetadata.Builder metadata(String impl) {
            long micros = (System.nanoTime() - start) / 1000;
            long points = acc != null ? acc.seen() : gathered;
            return ExecutionMetadata.newBuilder()
                    .setImplementation(impl)
                    .setExecutionTimeMs(micros / 1000)
                    .setAlgorithm(algorithm)
                    .setDataSize((int) Math.min(Integer.MAX_VALUE, points))
                    .putStats("execution_time_us", Long.toString(micros))
                    .putStats("stream_chunks", Long.toString(chunks))
                    .putStats("points_received", Long.toString(points));
        }

        private String metricName() {
            return spec == null ? "unknown" : spec.name();
        }

        private void fail(AnalysisException e) {
            MDC.put("request_id", requestId == null ? "" : requestId);
            try {
                if (e.code() == ErrorCode.INTERNAL) {
                    LOG.error("AnalyzeStream {} failed: {}", algorithm, e.getMessage());
                } else {
                    LOG.info("AnalyzeStream {} rejected: {}", algorithm, e.getMessage());
                }
            } finally {
                MDC.remove("request_id");
            }
            AnalysisResponse.Builder b = AnalysisResponse.newBuilder()
                    .setRequestId(requestId == null ? "" : requestId)
                    .setSuccess(false).setErrorCode(e.code()).setErrorMessage(e.getMessage());
            b.setMetadata(metadata("native"));
            if (acc != null) {
                acc.close();
            }
            acc = null;
            gather = null;
            gatheredData = null;
            if (inFlight == null) {
                inFlight = metrics.started();
            }
            reply(b.build(), e.code().name());
        }

        private void reply(AnalysisResponse resp, String outcome) {
            closed = true;
            if (inFlight != null) {
                inFlight.finished(metricName(), "native", resp.getSuccess() ? "success" : outcome,
                        System.nanoTime() - start);
            }
            out.onNext(resp);
            out.onCompleted();
        }
    }
}
