package analytics.engine.fuzz;

import analytics.engine.dispatch.AlgorithmRegistry;
import analytics.engine.dispatch.Dispatcher;
import analytics.engine.metrics.EngineMetrics;
import analytics.engine.proto.AnalysisOptions;
import analytics.engine.proto.AnalysisRequest;
import analytics.engine.proto.AnalysisResponse;
import analytics.engine.proto.ErrorCode;
import analytics.engine.stats.NativeStatistics;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.google.protobuf.InvalidProtocolBufferException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;

/**
 * Coverage-guided fuzz target (Jazzer, see tests/fuzz.sh) for the request validator and dispatcher
 * (native statistics; no Python workers). The input is either a serialized {@link AnalysisRequest}
 * (first byte 0xFF) or a compact structured encoding read by {@link Bytes}. Every request must be answered
 * within 10 s with the request id, and either success with strictly valid JSON or a documented,
 * non-INTERNAL error code with a non-empty message.
 */
public final class ValidatorFuzzTarget {

    static final ObjectMapper JSON = new ObjectMapper();
    static final AlgorithmRegistry REGISTRY = new AlgorithmRegistry();
    static final List<String> NAMES = List.copyOf(REGISTRY.names());
    static final Dispatcher DISPATCHER = new Dispatcher(REGISTRY, NativeStatistics.KERNELS, null, new EngineMetrics(),
            new Dispatcher.Limits(10_000, 30_000));
    static final Set<ErrorCode> DOCUMENTED = Set.of(ErrorCode.INVALID_ARGUMENT, ErrorCode.UNKNOWN_ALGORITHM,
            ErrorCode.UNAVAILABLE);
    static final String[] PARAM_NAMES = {"percentile", "nan_policy", "k", "eps", "min_samples", "n_components", "order",
        "periods", "period", "model", "alpha", "method", "threshold", "text", "text1", "text2", "n_keywords", "target",
        "fit_intercept", "max_iter", "random_state", "n_estimators", "max_depth", "_x"};

    private ValidatorFuzzTarget() {
    }

    /** A little reader over the fuzzer's bytes; runs out gracefully (zeros). */
    static final class Bytes {
        private final ByteBuffer b;

        Bytes(byte[] data) {
            b = ByteBuffer.wrap(data);
        }

        int u8() {
            return b.hasRemaining() ? b.get() & 0xFF : 0;
        }

        long i64() {
            return b.remaining() >= 8 ? b.getLong() : u8();
        }

        double f64() {
            return b.remaining() >= 8 ? b.getDouble() : u8();
        }

        String str(int max) {
            int n = Math.min(u8() % (max + 1), b.remaining());
            byte[] s = new byte[n];
            b.get(s);
            return new String(s, StandardCharsets.UTF_8);
        }
    }

    static AnalysisRequest build(byte[] input) {
        if (input.length > 0 && (input[0] & 0xFF) == 0xFF) {
            try {
                return AnalysisRequest.parseFrom(ByteBuffer.wrap(input, 1, input.length - 1));
            } catch (InvalidProtocolBufferException e) {
                return null; // the gRPC layer refuses such bytes before the dispatcher sees them
            }
        }
        Bytes in = new Bytes(input);
        AnalysisRequest.Builder r = AnalysisRequest.newBuilder().setRequestId("fz");
        int a = in.u8();
        r.setAlgorithm(a < NAMES.size() * 8 ? NAMES.get(a % NAMES.size()) : in.str(20));
        int n = in.u8() % 64;
        for (int i = 0; i < n; i++) {
            int kind = in.u8();
            r.addData(kind < 200 ? (kind - 100) / 3.0 : in.f64());
        }
        int shapes = in.u8() % 4;
        for (int i = 0; i < shapes; i++) {
            int s = in.u8();
            r.addShape(s < 128 ? s % 70 : in.i64());
        }
        int targets = in.u8() % 8 == 0 ? in.u8() % 64 : 0;
        for (int i = 0; i < targets; i++) {
            r.addTarget(in.f64());
        }
        int params = in.u8() % 5;
        for (int i = 0; i < params; i++) {
            int k = in.u8();
            String key = k < PARAM_NAMES.length * 8 ? PARAM_NAMES[k % PARAM_NAMES.length] : in.str(10);
            r.putParams(key, in.str(24));
        }
        int texts = in.u8() % 4;
        for (int i = 0; i < texts; i++) {
            r.addTexts(in.str(40));
        }
        if (in.u8() % 2 == 1) {
            r.setOptions(AnalysisOptions.newBuilder().setPreferRust(in.u8() % 2 == 0).setAllowPython(in.u8() % 2 == 0)
                    .setTimeoutMs((int) in.i64()).setIncludeMetadata(in.u8() % 2 == 0));
        }
        return r.build();
    }

    /** Jazzer calls this once before fuzzing: every algorithm once, outside the per-input timeout. */
    public static void fuzzerInitialize() throws Exception {
        for (String name : NAMES) {
            AnalysisRequest.Builder r = AnalysisRequest.newBuilder().setRequestId("warm").setAlgorithm(name);
            for (int i = 0; i < 32; i++) {
                r.addData(Math.sin(i));
            }
            DISPATCHER.analyze(r.build(), -1).get(60, TimeUnit.SECONDS);
        }
        fuzzerTestOneInput(new byte[] {1, 2, 3});
    }

    public static void fuzzerTestOneInput(byte[] input) throws Exception {
        AnalysisRequest req = build(input);
        if (req == null) {
            return;
        }
        AnalysisResponse resp = DISPATCHER.analyze(req, -1).get(10, TimeUnit.SECONDS);
        if (!req.getRequestId().isEmpty() && !resp.getRequestId().equals(req.getRequestId())) {
            throw new IllegalStateException("request id not echoed");
        }
        if (resp.getSuccess()) {
            JSON.readTree(resp.getResultJson()); // strict: NaN/Infinity tokens are a finding
            if (resp.getResultJson().isEmpty()) {
                throw new IllegalStateException("success without result_json");
            }
        } else {
            if (!DOCUMENTED.contains(resp.getErrorCode())) {
                throw new IllegalStateException("error code " + resp.getErrorCode() + ": " + resp.getErrorMessage());
            }
            if (resp.getErrorMessage().isBlank() || resp.getErrorMessage().length() > 2000) {
                throw new IllegalStateException("bad error message length " + resp.getErrorMessage().length());
            }
        }
    }
}
