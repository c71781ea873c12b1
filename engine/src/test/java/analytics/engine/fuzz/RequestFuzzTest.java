package analytics.engine.fuzz;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import analytics.engine.proto.AlgorithmInfo;
import analytics.engine.proto.AnalysisOptions;
import analytics.engine.proto.AnalysisRequest;
import analytics.engine.proto.AnalysisResponse;
import analytics.engine.proto.AnalyticsEngineGrpc;
import analytics.engine.proto.BatchAnalysisRequest;
import analytics.engine.proto.Empty;
import analytics.engine.proto.ErrorCode;
import analytics.engine.proto.StreamChunk;
import analytics.engine.server.TestEngine;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.grpc.CallOptions;
import io.grpc.KnownLength;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.ProtoUtils;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientCalls;
import io.grpc.stub.ClientResponseObserver;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Seeded generator of malformed and hostile {@link AnalysisRequest}s sent through the real server
 * (in-process engine on an ephemeral port, native statistics, workers = 0) via BatchAnalyze.
 *
 * <p>Invariants checked for every case: exactly one response per request (matched by request_id); a
 * failure has a documented, non-INTERNAL {@link ErrorCode} and a non-empty message; a success has
 * strictly valid JSON (no NaN/Infinity tokens); category-specific oracles (NaN with nan_policy=raise never
 * succeeds, an unknown algorithm is UNKNOWN_ALGORITHM, too many points is INVALID_ARGUMENT naming the
 * setting). The counts are printed (FUZZ-SUMMARY line) for docs/RELIABILITY.md.
 */
class RequestFuzzTest {

    static final long SEED = Long.getLong("fuzz.seed", 20261126L);
    static final int CASES = Integer.getInteger("fuzz.cases", 100_000);
    static final int MAX_POINTS = 100_000;
    static final int MAX_BATCH = 2_000;
    static final int BATCH = 500;
    static final ObjectMapper STRICT_JSON = new ObjectMapper();
    /** Codes a client may see from this engine (workers = 0, so Python algorithms are UNAVAILABLE). */
    static final Set<ErrorCode> DOCUMENTED = Set.of(ErrorCode.INVALID_ARGUMENT, ErrorCode.UNKNOWN_ALGORITHM,
            ErrorCode.UNAVAILABLE);

    static TestEngine engine;
    static List<AlgorithmInfo> algorithms;

    @BeforeAll
    static void start() throws Exception {
        // 100 000 rejections would be 100 000 log lines: keep the engine's own loggers quiet in this test.
        ((ch.qos.logback.classic.Logger) org.slf4j.LoggerFactory.getLogger("analytics.engine"))
                .setLevel(ch.qos.logback.classic.Level.ERROR);
        engine = new TestEngine(Map.of("max_data_points", Integer.toString(MAX_POINTS),
                "max_batch_size", Integer.toString(MAX_BATCH), "log_level", "warn"), null);
        algorithms = engine.stub.getSupportedAlgorithms(Empty.getDefaultInstance()).getAlgorithmsList();
    }

    @AfterAll
    static void stop() throws Exception {
        engine.close();
        ((ch.qos.logback.classic.Logger) org.slf4j.LoggerFactory.getLogger("analytics.engine")).setLevel(null);
    }

    enum Kind {
        PLAUSIBLE, NON_FINITE, EMPTY, TOO_MANY_POINTS, SHAPE, UNKNOWN_ALGORITHM, GARBAGE_PARAMS, HUGE_PARAMS,
        ODD_UNICODE, TARGET, OPTIONS, TEXTS, EXTREME_VALUES
    }

    /** One generated case with what the oracle needs to know about it. */
    record Case(AnalysisRequest request, Kind kind, boolean knownAlgorithm, boolean nanRaise) {
    }

    static final String[] NASTY = {"", " ", "\t", "NaN", "nan", "-inf", "Infinity", "1e309", "-1e309", "0x10", "1_000",
        "٣", "１２", "-0", "+5", "5.", ".5", "1e-400", "9223372036854775808", "-9223372036854775809", "true", "null",
        "[1,2]", "{}", "1,1,1", "1,,1", ",", "a,b,c", "-1", "0", "101", "100", "50", "2147483648", "\u0000",
        "../../etc/passwd", "$(rm -rf /)", "'; DROP TABLE x;--", "%s%n%x", "\uD83D\uDE00", "\u202Eabc", "\uFEFF1",
        "multiplicative", "additive", "zscore", "iqr", "cosine"};

    static String oddString(Random r, int maxLen) {
        int len = r.nextInt(maxLen + 1);
        StringBuilder sb = new StringBuilder(len);
        for (int i = 0; i < len; i++) {
            switch (r.nextInt(8)) {
                case 0 -> sb.append((char) r.nextInt(0x20)); // control characters, NUL included
                case 1 -> sb.appendCodePoint(0x1F300 + r.nextInt(0x300)); // emoji (surrogate pairs)
                case 2 -> sb.append((char) (0x0590 + r.nextInt(0x100))); // Hebrew/Arabic (RTL)
                case 3 -> sb.append("\u200B\u200D\u202E\uFEFF".charAt(r.nextInt(4))); // zero-width, bidi override
                case 4 -> sb.appendCodePoint(0x10000 + r.nextInt(0xFFFF)); // astral planes
                case 5 -> sb.append((char) (0x4E00 + r.nextInt(0x5000))); // CJK
                default -> sb.append((char) (0x20 + r.nextInt(0x5F))); // printable ASCII
            }
        }
        return sb.toString();
    }

    static double value(Random r) {
        return switch (r.nextInt(10)) {
            case 0 -> Double.MAX_VALUE * (r.nextBoolean() ? 1 : -1);
            case 1 -> Double.MIN_VALUE;
            case 2 -> -0.0;
            case 3 -> 1e308;
            case 4 -> r.nextLong();
            default -> r.nextGaussian() * Math.pow(10, r.nextInt(20) - 10);
        };
    }

    static Case generate(Random r, int n) {
        String id = "f-" + n;
        AnalysisRequest.Builder b = AnalysisRequest.newBuilder().setRequestId(id);
        AlgorithmInfo alg = algorithms.get(r.nextInt(algorithms.size()));
        b.setAlgorithm(alg.getName());
        boolean known = true;
        int len = r.nextInt(40);
        for (int i = 0; i < len; i++) {
            b.addData(r.nextGaussian() * 10);
        }
        Kind kind = Kind.values()[r.nextInt(Kind.values().length)];
        // Rare and heavy: at most ~1 per batch.
        if (kind == Kind.TOO_MANY_POINTS && r.nextInt(100) != 0) {
            kind = Kind.PLAUSIBLE;
        }
        // Usually give the algorithm plausible values for its params.
        for (String p : alg.getRequiredParamsList()) {
            b.putParams(p, r.nextBoolean() ? Integer.toString(1 + r.nextInt(5)) : NASTY[r.nextInt(NASTY.length)]);
        }
        for (String p : alg.getOptionalParamsList()) {
            if (r.nextInt(3) == 0) {
                b.putParams(p, r.nextBoolean() ? Integer.toString(r.nextInt(101)) : NASTY[r.nextInt(NASTY.length)]);
            }
        }
        boolean nanRaise = false;
        switch (kind) {
            case PLAUSIBLE -> {
            }
            case NON_FINITE -> {
                b.clearData();
                int m = 1 + r.nextInt(30);
                double[] bad = {Double.NaN, Double.POSITIVE_INFINITY, Double.NEGATIVE_INFINITY};
                boolean any = false;
                for (int i = 0; i < m; i++) {
                    boolean nonFinite = r.nextInt(3) == 0;
                    any |= nonFinite;
                    b.addData(nonFinite ? bad[r.nextInt(3)] : r.nextGaussian());
                }
                if (!any) {
                    b.setData(r.nextInt(m), Double.NaN);
                }
                switch (r.nextInt(4)) {
                    case 0 -> nanRaise = true;
                    case 1 -> {
                        b.putParams("nan_policy", "raise");
                        nanRaise = true;
                    }
                    case 2 -> b.putParams("nan_policy", "omit");
                    default -> b.putParams("nan_policy", NASTY[r.nextInt(NASTY.length)]);
                }
            }
            case EMPTY -> b.clearData();
            case TOO_MANY_POINTS -> {
                b.clearData();
                int m = MAX_POINTS + 1 + r.nextInt(100);
                for (int i = 0; i < m; i++) {
                    b.addData(i);
                }
            }
            case SHAPE -> {
                long[] dims = {-1, 0, 1, 2, len, len + 1, len - 1, Integer.MAX_VALUE, 1L << 31, 1L << 32,
                    Long.MAX_VALUE, Long.MIN_VALUE, -len};
                int k = r.nextInt(5);
                for (int i = 0; i < k; i++) {
                    b.addShape(dims[r.nextInt(dims.length)]);
                }
            }
            case UNKNOWN_ALGORITHM -> {
                known = false;
                String name = switch (r.nextInt(6)) {
                    case 0 -> "";
                    case 1 -> alg.getName().toUpperCase();
                    case 2 -> alg.getName() + "\u0000";
                    case 3 -> "_test_hang";
                    case 4 -> "x".repeat(1 + r.nextInt(5000));
                    default -> oddString(r, 30);
                };
                if (name.trim().isEmpty() || algorithms.stream().anyMatch(a -> a.getName().equals(name.trim()))) {
                    b.setAlgorithm("no_such_" + n);
                } else {
                    b.setAlgorithm(name);
                }
            }
            case GARBAGE_PARAMS -> {
                int k = r.nextInt(20);
                for (int i = 0; i < k; i++) {
                    String key = r.nextBoolean() ? oddString(r, 12)
                            : (alg.getOptionalParamsCount() > 0 ? alg.getOptionalParams(r.nextInt(alg.getOptionalParamsCount())) : "k");
                    b.putParams(key, r.nextBoolean() ? NASTY[r.nextInt(NASTY.length)] : oddString(r, 40));
                }
            }
            case HUGE_PARAMS -> {
                if (r.nextBoolean()) {
                    b.putParams(r.nextBoolean() ? "percentile" : "k", "9".repeat(10_000 + r.nextInt(50_000)));
                } else {
                    for (int i = 0; i < 1000; i++) {
                        b.putParams("p" + i, Integer.toString(i));
                    }
                }
            }
            case ODD_UNICODE -> {
                b.setRequestId(oddString(r, 20) + "#" + n); // still unique: the oracle matches by id
                b.putParams(oddString(r, 8), oddString(r, 30));
                b.putParams("text", oddString(r, 200));
            }
            case TARGET -> {
                int t = r.nextInt(3) == 0 ? len : r.nextInt(60);
                for (int i = 0; i < t; i++) {
                    b.addTarget(r.nextInt(10) == 0 ? Double.NaN : r.nextGaussian());
                }
                if (r.nextBoolean() && len > 0) {
                    b.addShape(len / 2 == 0 ? 1 : len / 2).addShape(2);
                }
            }
            case OPTIONS -> {
                int[] timeouts = {-1, 0, 1, Integer.MAX_VALUE, Integer.MIN_VALUE, 30000};
                b.setOptions(AnalysisOptions.newBuilder().setPreferRust(r.nextBoolean()).setAllowPython(r.nextBoolean())
                        .setTimeoutMs(timeouts[r.nextInt(timeouts.length)]).setIncludeMetadata(r.nextBoolean()));
            }
            case TEXTS -> {
                int k = r.nextInt(5);
                for (int i = 0; i < k; i++) {
                    b.addTexts(oddString(r, 100));
                }
            }
            case EXTREME_VALUES -> {
                b.clearData();
                int m = r.nextInt(30);
                for (int i = 0; i < m; i++) {
                    b.addData(value(r));
                }
            }
        }
        if (kind != Kind.OPTIONS && r.nextInt(4) == 0) {
            b.setOptions(AnalysisOptions.newBuilder().setPreferRust(true).setAllowPython(true).setTimeoutMs(30000)
                    .setIncludeMetadata(r.nextBoolean()));
        }
        return new Case(b.build(), kind, known, nanRaise);
    }

    @Test
    void hundredThousandMalformedRequestsAllAnsweredClearly() throws Exception {
        Random r = new Random(SEED);
        Map<Kind, AtomicInteger> perKind = new EnumMap<>(Kind.class);
        Map<String, AtomicInteger> outcomes = new TreeMap<>();
        List<String> violations = new ArrayList<>();
        int sent = 0;
        int answered = 0;
        int batches = 0;
        long t0 = System.nanoTime();
        AnalyticsEngineGrpc.AnalyticsEngineBlockingStub stub = engine.stub;
        while (sent < CASES) {
            int size = Math.min(BATCH, CASES - sent);
            Map<String, Case> byId = new HashMap<>();
            BatchAnalysisRequest.Builder batch = BatchAnalysisRequest.newBuilder().setBatchId("fuzz-" + batches);
            for (int i = 0; i < size; i++) {
                Case c = generate(r, sent + i);
                byId.put(c.request().getRequestId(), c);
                batch.addRequests(c.request());
                perKind.computeIfAbsent(c.kind(), k -> new AtomicInteger()).incrementAndGet();
            }
            sent += size;
            batches++;
            Iterator<AnalysisResponse> it = stub.withDeadlineAfter(120, TimeUnit.SECONDS).batchAnalyze(batch.build());
            int got = 0;
            while (it.hasNext()) {
                AnalysisResponse resp = it.next();
                got++;
                Case c = byId.remove(resp.getRequestId());
                if (c == null) {
                    violations.add("response for unknown or repeated request_id '" + resp.getRequestId() + "'");
                    continue;
                }
                String outcome = check(c, resp, violations);
                outcomes.computeIfAbsent(outcome, k -> new AtomicInteger()).incrementAndGet();
            }
            answered += got;
            if (!byId.isEmpty()) {
                violations.add("batch " + batches + ": " + byId.size() + " requests got no response, e.g. "
                        + byId.keySet().iterator().next());
            }
            if (violations.size() > 20) {
                break;
            }
        }
        long ms = (System.nanoTime() - t0) / 1_000_000;
        System.out.printf("FUZZ-SUMMARY seed=%d cases=%d answered=%d lost=%d batches=%d violations=%d time_ms=%d%n",
                SEED, sent, answered, sent - answered, batches, violations.size(), ms);
        System.out.println("FUZZ-KINDS " + perKind);
        System.out.println("FUZZ-OUTCOMES " + outcomes);
        assertTrue(violations.isEmpty(), "violations:\n" + String.join("\n", violations.subList(0,
                Math.min(20, violations.size()))));
        assertEquals(sent, answered);
        assertTrue(sent >= CASES);
        // The server is still healthy and serving.
        assertTrue(engine.stub.analyze(AnalysisRequest.newBuilder().setAlgorithm("mean").addData(2).build()).getSuccess());
    }

    /** Returns the outcome label; adds a violation when an invariant fails. */
    static String check(Case c, AnalysisResponse resp, List<String> violations) {
        String id = c.request().getRequestId();
        String where = c.kind() + " " + shortId(id) + " alg='" + abbreviate(c.request().getAlgorithm()) + "'";
        if (resp.getSuccess()) {
            try {
                STRICT_JSON.readTree(resp.getResultJson());
            } catch (Exception e) {
                violations.add(where + ": success with invalid JSON: " + abbreviate(resp.getResultJson()));
            }
            if (resp.getResultJson().isEmpty()) {
                violations.add(where + ": success with empty result_json");
            }
            if (c.nanRaise()) {
                violations.add(where + ": NaN/Inf with nan_policy=raise succeeded");
            }
            if (!c.knownAlgorithm()) {
                violations.add(where + ": unknown algorithm succeeded");
            }
            if (c.kind() == Kind.TOO_MANY_POINTS) {
                violations.add(where + ": more than max_data_points succeeded");
            }
            return "success";
        }
        if (!DOCUMENTED.contains(resp.getErrorCode())) {
            violations.add(where + ": error code " + resp.getErrorCode() + ": " + resp.getErrorMessage());
        }
        if (resp.getErrorMessage().isBlank()) {
            violations.add(where + ": empty error message (" + resp.getErrorCode() + ")");
        }
        if (resp.getErrorMessage().length() > 2000) {
            violations.add(where + ": error message of " + resp.getErrorMessage().length() + " chars");
        }
        if (!c.knownAlgorithm() && resp.getErrorCode() != ErrorCode.UNKNOWN_ALGORITHM) {
            violations.add(where + ": unknown algorithm answered " + resp.getErrorCode());
        }
        if (c.kind() == Kind.TOO_MANY_POINTS && resp.getErrorCode() == ErrorCode.INVALID_ARGUMENT
                && !resp.getErrorMessage().contains("max_data_points")) {
            violations.add(where + ": too many points, message does not name max_data_points: " + resp.getErrorMessage());
        }
        return resp.getErrorCode().name();
    }

    static String shortId(String id) {
        int i = id.lastIndexOf('#');
        return i >= 0 ? id.substring(i) : id;
    }

    static String abbreviate(String s) {
        return s.length() > 60 ? s.substring(0, 60) + "..." : s;
    }

    @Test
    void batchLimits() {
        BatchAnalysisRequest.Builder over = BatchAnalysisRequest.newBuilder().setBatchId("too-deep");
        BatchAnalysisRequest.Builder full = BatchAnalysisRequest.newBuilder().setBatchId("full");
        for (int i = 0; i <= MAX_BATCH; i++) {
            AnalysisRequest q = AnalysisRequest.newBuilder().setRequestId("b" + i).setAlgorithm("sum_or_unknown")
                    .addData(i).build();
            over.addRequests(q);
            if (i < MAX_BATCH) {
                full.addRequests(q);
            }
        }
        StatusRuntimeException e = org.junit.jupiter.api.Assertions.assertThrows(StatusRuntimeException.class,
                () -> engine.stub.batchAnalyze(over.build()).hasNext());
        assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode());
        assertTrue(e.getStatus().getDescription().contains("max_batch_size"), e.getStatus().getDescription());
        int n = 0;
        for (Iterator<AnalysisResponse> it = engine.stub.batchAnalyze(full.build()); it.hasNext(); n++) {
            assertEquals(ErrorCode.UNKNOWN_ALGORITHM, it.next().getErrorCode());
        }
        assertEquals(MAX_BATCH, n);
    }

    /**
     * 10^8 points (800 MB) in one Analyze call, without building it: a request marshaller that streams the
     * protobuf encoding lazily. The server refuses it from the gRPC length prefix (max_message_mb).
     */
    @Test
    void hundredMillionPointsRefusedByMessageSize() throws Exception {
        long points = 100_000_000L;
        MethodDescriptor<Long, AnalysisResponse> lazyAnalyze = MethodDescriptor.<Long, AnalysisResponse>newBuilder()
                .setType(MethodDescriptor.MethodType.UNARY)
                .setFullMethodName(AnalyticsEngineGrpc.getAnalyzeMethod().getFullMethodName())
                .setRequestMarshaller(new MethodDescriptor.Marshaller<>() {
                    @Override
                    public InputStream stream(Long n) {
                        return new LazyHugeRequest(n);
                    }

                    @Override
                    public Long parse(InputStream stream) {
                        throw new UnsupportedOperationException();
                    }
                })
                .setResponseMarshaller(ProtoUtils.marshaller(AnalysisResponse.getDefaultInstance()))
                .build();
        long t0 = System.nanoTime();
        StatusRuntimeException e = org.junit.jupiter.api.Assertions.assertThrows(StatusRuntimeException.class,
                () -> ClientCalls.blockingUnaryCall(engine.channel, lazyAnalyze,
                        CallOptions.DEFAULT.withDeadlineAfter(60, TimeUnit.SECONDS), points));
        long ms = (System.nanoTime() - t0) / 1_000_000;
        System.out.println("FUZZ-HUGE 1e8 points via Analyze: " + e.getStatus().getCode() + " in " + ms + " ms: "
                + e.getStatus().getDescription());
        assertEquals(Status.Code.RESOURCE_EXHAUSTED, e.getStatus().getCode(), e.getStatus().toString());
        assertTrue(String.valueOf(e.getStatus().getDescription()).contains("exceeds maximum"),
                e.getStatus().getDescription());
        assertTrue(engine.stub.analyze(AnalysisRequest.newBuilder().setAlgorithm("mean").addData(2).build()).getSuccess());
    }

    /** The protobuf encoding of {request_id:"huge", algorithm:"mean", data:[0.0 x n]}, generated on the fly. */
    static final class LazyHugeRequest extends InputStream implements KnownLength {
        private final byte[] head;
        private final long total;
        private long pos;

        LazyHugeRequest(long n) {
            java.io.ByteArrayOutputStream h = new java.io.ByteArrayOutputStream();
            h.write(0x0A);
            h.write(4);
            h.writeBytes("huge".getBytes(StandardCharsets.US_ASCII));
            h.write(0x12);
            h.write(4);
            h.writeBytes("mean".getBytes(StandardCharsets.US_ASCII));
            h.write(0x1A);
            long len = 8 * n;
            while (len >= 0x80) {
                h.write((int) (len & 0x7F) | 0x80);
                len >>>= 7;
            }
            h.write((int) len);
            head = h.toByteArray();
            total = head.length + 8 * n;
        }

        @Override
        public int read() {
            if (pos >= total) {
                return -1;
            }
            int b = pos < head.length ? head[(int) pos] & 0xFF : 0;
            pos++;
            return b;
        }

        @Override
        public int read(byte[] buf, int off, int len) {
            if (pos >= total) {
                return -1;
            }
            int n = (int) Math.min(len, total - pos);
            for (int i = 0; i < n; i++) {
                buf[off + i] = pos + i < head.length ? head[(int) (pos + i)] : 0;
            }
            pos += n;
            return n;
        }

        @Override
        public int available() {
            return (int) Math.min(Integer.MAX_VALUE, total - pos);
        }
    }

    /**
     * 10^8 points through AnalyzeStream (chunks of 50 000) for an algorithm that needs the whole series
     * (mode): refused as soon as stream_max_points is passed. (One-pass statistics such as mean accept
     * 10^8 points in constant memory: see StreamIngestTest.)
     */
    @Test
    void hundredMillionPointsRefusedOnTheStream() throws Exception {
        int chunkPoints = 50_000;
        long totalChunks = 100_000_000L / chunkPoints;
        StreamChunk.Builder cb = StreamChunk.newBuilder();
        for (int i = 0; i < chunkPoints; i++) {
            cb.addData(i);
        }
        StreamChunk data = cb.build();
        StreamChunk first = data.toBuilder().setRequestId("stream-huge").setAlgorithm("mode").build();
        CompletableFuture<AnalysisResponse> answer = new CompletableFuture<>();
        AtomicInteger chunksSent = new AtomicInteger();
        AnalyticsEngineGrpc.newStub(engine.channel).withDeadlineAfter(60, TimeUnit.SECONDS).analyzeStream(
                new ClientResponseObserver<StreamChunk, AnalysisResponse>() {
                    @Override
                    public void beforeStart(ClientCallStreamObserver<StreamChunk> req) {
                        req.setOnReadyHandler(() -> {
                            while (req.isReady() && !answer.isDone() && chunksSent.get() < totalChunks) {
                                req.onNext(chunksSent.get() == 0 ? first : data);
                                chunksSent.incrementAndGet();
                            }
                            if (chunksSent.get() >= totalChunks && !answer.isDone()) {
                                req.onCompleted();
                            }
                        });
                    }

                    @Override
                    public void onNext(AnalysisResponse value) {
                        answer.complete(value);
                    }

                    @Override
                    public void onError(Throwable t) {
                        answer.completeExceptionally(t);
                    }

                    @Override
                    public void onCompleted() {
                    }
                });
        AnalysisResponse resp = answer.get(60, TimeUnit.SECONDS);
        System.out.println("FUZZ-HUGE 1e8 points via AnalyzeStream: refused after " + chunksSent.get()
                + " chunks of " + chunkPoints + ": " + resp.getErrorMessage());
        assertFalse(resp.getSuccess());
        assertEquals(ErrorCode.INVALID_ARGUMENT, resp.getErrorCode());
        assertTrue(resp.getErrorMessage().contains("stream_max_points"), resp.getErrorMessage());
        assertTrue(chunksSent.get() < totalChunks / 10, "refused early, not after the whole stream: "
                + chunksSent.get());
    }
}
