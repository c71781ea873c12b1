package analytics.engine.server;

import analytics.engine.dispatch.Dispatcher;
import analytics.engine.proto.AnalysisRequest;
import analytics.engine.proto.AnalysisResponse;
import analytics.engine.proto.ErrorCode;
import analytics.engine.proto.StreamChunk;
import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import java.util.Arrays;

/**
 * AnalyzeStream: a client-streaming way in for series larger than one gRPC message. The first chunk
 * names the algorithm, params and options; every chunk may carry data. The data is gathered (up to the
 * per-request limit) and analysed like one {@code Analyze} call.
 */
public final class StreamIngest {

    private final Dispatcher dispatcher;
    private final long maxPoints;

    public StreamIngest(Dispatcher dispatcher, long maxPoints) {
        this.dispatcher = dispatcher;
        this.maxPoints = maxPoints;
    }

    StreamObserver<StreamChunk> open(StreamObserver<AnalysisResponse> out) {
        return new StreamObserver<>() {
            private StreamChunk header;
            private double[] data = new double[1024];
            private int size;
            private String error;

            @Override
            public void onNext(StreamChunk chunk) {
                if (header == null) {
                    header = chunk;
                }
                if (error != null) {
                    return;
                }
                int add = chunk.getDataCount();
                if ((long) size + add > maxPoints) {
                    // Answer at once (the client need not upload the rest) and drop what was gathered.
                    error = "stream exceeds " + maxPoints + " data points (setting max_data_points)";
                    data = null;
                    out.onNext(AnalysisResponse.newBuilder().setRequestId(header.getRequestId()).setSuccess(false)
                            .setErrorCode(ErrorCode.INVALID_ARGUMENT).setErrorMessage(error).build());
                    out.onCompleted();
                    return;
                }
                if (size + add > data.length) {
                    data = Arrays.copyOf(data, Math.max(size + add, data.length * 2));
                }
                for (int i = 0; i < add; i++) {
                    data[size + i] = chunk.getData(i);
                }
                size += add;
            }

            @Override
            public void onError(Throwable t) {
                data = null; // client cancelled: nothing to answer
            }

            @Override
            public void onCompleted() {
                if (header == null) {
                    out.onError(Status.INVALID_ARGUMENT.withDescription("empty stream: the first message must name "
                            + "the algorithm").asRuntimeException());
                    return;
                }
                if (error != null) {
                    return; // already answered in onNext
                }
                AnalysisRequest.Builder req = AnalysisRequest.newBuilder()
                        .setRequestId(header.getRequestId())
                        .setAlgorithm(header.getAlgorithm())
                        .putAllParams(header.getParamsMap());
                if (header.hasOptions()) {
                    req.setOptions(header.getOptions());
                }
                for (int i = 0; i < size; i++) {
                    req.addData(data[i]);
                }
                data = null;
                dispatcher.analyze(req.build(), -1).whenComplete((resp, err) -> {
                    out.onNext(resp);
                    out.onCompleted();
                });
            }
        };
    }
}
