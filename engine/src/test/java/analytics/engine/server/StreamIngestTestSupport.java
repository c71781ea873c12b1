package analytics.engine.server;

import analytics.engine.proto.AnalysisResponse;
import analytics.engine.proto.AnalyticsEngineGrpc;
import analytics.engine.proto.StreamChunk;
import io.grpc.stub.StreamObserver;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

/** Sends one AnalyzeStream call to a {@link TestEngine}. */
final class StreamIngestTestSupport {
    private StreamIngestTestSupport() {
    }

    static AnalysisResponse stream(TestEngine engine, String alg, Map<String, String> params, double[] x, int chunk)
            throws Exception {
        return stream(engine, StreamChunk.newBuilder().setRequestId("rq-" + alg).setAlgorithm(alg)
                .putAllParams(params).build(), x, chunk);
    }

    /** Sends {@code header}, then {@code x} in chunks of {@code chunk} values; the answer (or the gRPC error). */
    static AnalysisResponse stream(TestEngine engine, StreamChunk header, double[] x, int chunk) throws Exception {
        CompletableFuture<AnalysisResponse> done = new CompletableFuture<>();
        StreamObserver<StreamChunk> in = AnalyticsEngineGrpc.newStub(engine.channel).analyzeStream(
                new StreamObserver<>() {
                    public void onNext(AnalysisResponse v) {
                        done.complete(v);
                    }

                    public void onError(Throwable t) {
                        done.completeExceptionally(t);
                    }

                    public void onCompleted() {
                    }
                });
        in.onNext(header);
        for (int i = 0; i < x.length && !done.isDone(); i += chunk) {
            StreamChunk.Builder c = StreamChunk.newBuilder();
            for (int j = i; j < Math.min(x.length, i + chunk); j++) {
                c.addData(x[j]);
            }
            in.onNext(c.build());
        }
        in.onCompleted();
        return done.get(60, TimeUnit.SECONDS);
    }
}
