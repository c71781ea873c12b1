package analytics.engine.server;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import analytics.engine.dispatch.ResultJson;
import analytics.engine.v7client.AlgorithmInfo;
import analytics.engine.v7client.AnalysisOptions;
import analytics.engine.v7client.AnalysisRequest;
import analytics.engine.v7client.AnalysisResponse;
import analytics.engine.v7client.AnalyticsEngineGrpc;
import analytics.engine.v7client.BatchAnalysisRequest;
import analytics.engine.v7client.Empty;
import analytics.engine.workers.PythonWorkerPool;
import analytics.engine.workers.WorkerPoolConfig;
import analytics.engine.workers.WorkerTestSupport;
import com.fasterxml.jackson.databind.JsonNode;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The v7 compatibility suite: every row of the table "The earlier engine's behaviour, measured side
 * by side" (shared/v7-wire-contract.md, issue 14) pinned with the table's numbers, through the real
 * gRPC server and real Python workers, by a client compiled from the earlier engine's proto
 * (src/test/proto/v7: fields 1..5 only, so nothing this engine added can leak into the requests).
 * Test names carry the row numbers.
 */
class V7CompatibilityTest {

    static PythonWorkerPool pool;
    static TestEngine engine;
    static AnalyticsEngineGrpc.AnalyticsEngineBlockingStub v7;

    /** What v7 clients send (README of the earlier engine; the contract's "Behaviour clients rely on"). */
    static final AnalysisOptions CLIENT_OPTIONS = AnalysisOptions.newBuilder().setPreferRust(true)
            .setAllowPython(true).setTimeoutMs(30000).setIncludeMetadata(true).build();

    @BeforeAll
    static void start() throws Exception {
        // the worker package from this checkout (not a possibly stale copy installed in the venv)
        pool = new PythonWorkerPool(WorkerPoolConfig.defaults(WorkerTestSupport.python()).withWorkers(2)
                .withExtraEnv(Map.of("PYTHONPATH", WorkerTestSupport.repoRoot().resolve("py-worker").toString())),
                new SimpleMeterRegistry());
        pool.start();
        assertTrue(pool.awaitReady(Duration.ofSeconds(60)), "workers did not start: " + pool.status());
        engine = new TestEngine(Map.of("workers", "2"), pool);
        v7 = AnalyticsEngineGrpc.newBlockingStub(engine.channel);
    }

    @AfterAll
    static void stop() throws Exception {
        if (engine != null) {
            engine.close();
        }
        if (pool != null) {
            pool.close();
        }
    }

    static AnalysisRequest.Builder req(String algorithm, double... data) {
        AnalysisRequest.Builder b = AnalysisRequest.newBuilder().setRequestId("v7-" + algorithm)
                .setAlgorithm(algorithm).setOptions(CLIENT_OPTIONS);
        for (double d : data) {
            b.addData(d);
        }
        return b;
    }

    static AnalysisResponse call(AnalysisRequest.Builder b) {
        AnalysisResponse r = v7.analyze(b.build());
        assertEquals(b.getRequestId(), r.getRequestId());
        return r;
    }

    /** The parsed result_json of a successful answer. */
    static JsonNode ok(AnalysisRequest.Builder b) throws Exception {
        AnalysisResponse r = call(b);
        assertTrue(r.getSuccess(), b.getAlgorithm() + ": " + r.getErrorMessage());
        return ResultJson.mapper().readTree(r.getResultJson());
    }

    static JsonNode ok(String algorithm, Map<String, String> params, double... data) throws Exception {
        return ok(req(algorithm, data).putAllParams(params));
    }

    static double num(String algorithm, double... data) throws Exception {
        JsonNode n = ok(algorithm, Map.of(), data);
        assertTrue(n.isNumber(), algorithm + " gave " + n);
        return n.asDouble();
    }

    /** Both implementations of a native statistic: native (what v7 clients ask for) and Python. */
    static List<JsonNode> bothImplementations(String algorithm, double... data) throws Exception {
        List<JsonNode> out = new ArrayList<>();
        for (boolean preferNative : new boolean[] {true, false}) {
            AnalysisRequest.Builder b = req(algorithm, data)
                    .setOptions(CLIENT_OPTIONS.toBuilder().setPreferRust(preferNative));
            AnalysisResponse r = call(b);
            assertTrue(r.getSuccess(), algorithm + ": " + r.getErrorMessage());
            assertEquals(preferNative ? "native" : "python", r.getMetadata().getImplementation());
            out.add(ResultJson.mapper().readTree(r.getResultJson()));
        }
        return out;
    }

    static List<Double> doubles(JsonNode array) {
        List<Double> out = new ArrayList<>();
        array.forEach(v -> {
            assertTrue(v.isNumber(), "not a number: " + v);
            out.add(v.asDouble());
        });
        return out;
    }

    // ------------------------------------------------------------------ k-means (rows 1, 2)

    @Test
    void row1KmeansWithoutKMakesThreeClusters() throws Exception {
        JsonNode r = ok("kmeans", Map.of(), 1, 1.1, 0.9, 5, 5.2, 4.8, 9, 9.1, 8.9);
        assertEquals(3, r.get("n_clusters").asInt());
        Set<Integer> labels = new HashSet<>();
        r.get("clusters").forEach(c -> labels.add(c.asInt()));
        assertEquals(3, labels.size());
        for (String key : List.of("clusters", "centers", "n_clusters", "inertia", "silhouette_score", "n_iter")) {
            assertTrue(r.has(key), key);
        }
    }

    @Test
    void row2KmeansSilhouetteIsZeroNotNullForOneClusterOrOnePerPoint() throws Exception {
        JsonNode one = ok("kmeans", Map.of("k", "1"), 1, 2, 3, 4);
        assertTrue(one.get("silhouette_score").isNumber(), one.toString());
        assertEquals(0.0, one.get("silhouette_score").asDouble());
        JsonNode each = ok("kmeans", Map.of("k", "4"), 1, 2, 3, 4);
        assertEquals(0.0, each.get("silhouette_score").asDouble());
        assertTrue(each.get("silhouette_score").isNumber());
    }

    // ------------------------------------------------------------------ correlation, shape statistics (3-6)

    @Test
    void row3CorrelationIsTheLag1AutocorrelationWithTheGlobalMean() throws Exception {
        assertEquals(-1.0 / 42, num("correlation", 1, 2, 4), 1e-16); // -0.0238..., not Pearson's 1.0
        for (JsonNode n : bothImplementations("correlation", 1, 2, 4)) {
            assertEquals(-0.023809523809523808, n.asDouble(), 1e-16);
        }
        for (JsonNode s : bothImplementations("summary", 1, 2, 4)) {
            assertEquals(-0.023809523809523808, s.get("autocorr").asDouble(), 1e-16);
        }
        // a longer series: sum (x_i - m)(x_i+1 - m) / sum (x_i - m)^2, computed here directly
        double[] x = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9};
        double m = 0;
        for (double v : x) {
            m += v;
        }
        m /= x.length;
        double numer = 0;
        double denom = 0;
        for (int i = 0; i < x.length; i++) {
            denom += (x[i] - m) * (x[i] - m);
            if (i + 1 < x.length) {
                numer += (x[i] - m) * (x[i + 1] - m);
            }
        }
        assertEquals(numer / denom, num("correlation", x), 1e-14);
        assertEquals(numer / denom, ok("summary", Map.of(), x).get("autocorr").asDouble(), 1e-14);
    }

    @Test
    void row3StreamingGivesTheSameCorrelationAsAnalyze() throws Exception {
        double[] x = new double[20_000];
        java.util.SplittableRandom r = new java.util.SplittableRandom(14);
        double prev = 0;
        for (int i = 0; i < x.length; i++) {
            prev = 0.6 * prev + r.nextDouble() - 0.5;
            x[i] = 100 + prev;
        }
        double analyzed = num("correlation", x);
        analytics.engine.proto.AnalysisResponse streamed = StreamIngestTestSupport.stream(engine, "correlation",
                Map.of(), x, 777);
        assertTrue(streamed.getSuccess(), streamed.getErrorMessage());
        assertEquals(analyzed, Double.parseDouble(streamed.getResultJson()), 1e-12);
        analytics.engine.proto.AnalysisResponse summary = StreamIngestTestSupport.stream(engine, "summary",
                Map.of(), x, 777);
        assertTrue(summary.getSuccess(), summary.getErrorMessage());
        assertEquals(ok("summary", Map.of(), x).get("autocorr").asDouble(),
                ResultJson.mapper().readTree(summary.getResultJson()).get("autocorr").asDouble(), 1e-12);
        assertEquals(-0.5, Double.parseDouble(StreamIngestTestSupport.stream(engine, "correlation", Map.of(),
                new double[] {3, 5}, 1).getResultJson()));
    }

    @Test
    void row4CorrelationAndSummaryOnTwoPoints() throws Exception {
        for (JsonNode n : bothImplementations("correlation", 3, 5)) {
            assertEquals(-0.5, n.asDouble());
        }
        for (JsonNode s : bothImplementations("summary", 3, 5)) {
            assertEquals(-0.5, s.get("autocorr").asDouble());
        }
        AnalysisResponse one = call(req("correlation", 3));
        assertFalse(one.getSuccess());
        assertTrue(one.getErrorMessage().contains("correlation needs at least 2 data points"), one.getErrorMessage());
    }

    @Test
    void row5ConstantDataGivesZero() throws Exception {
        double[] c = {2.5, 2.5, 2.5, 2.5, 2.5, 2.5};
        for (String alg : List.of("skewness", "kurtosis", "correlation")) {
            for (JsonNode n : bothImplementations(alg, c)) {
                assertTrue(n.isNumber(), alg + " gave " + n);
                assertEquals(0.0, n.asDouble(), alg);
            }
        }
        for (JsonNode s : bothImplementations("summary", c)) {
            assertEquals(0.0, s.get("autocorr").asDouble());
            assertTrue(s.get("autocorr").isNumber());
        }
    }

    @Test
    void row6ModeBinsHalfAwayFromZeroAndReportsTheLastRawValue() throws Exception {
        for (JsonNode m : bothImplementations("mode", 2.5e-6, 2.5e-6, 3e-6)) {
            assertEquals(List.of(3e-6), doubles(m.get("modes")));
            assertEquals(3, m.get("frequency").asInt());
            assertEquals(1, m.get("count").asInt());
            assertFalse(m.get("is_multimodal").asBoolean());
            assertEquals(3, m.get("data_size").asInt());
        }
    }

    // ------------------------------------------------------------------ PCA, ARIMA (7-9)

    @Test
    void row7PcaOfASeriesUsesStandardisedValueAndCircularlyShiftedValue() throws Exception {
        double[] x = {1, 2, 4, 8, 3, 5};
        JsonNode r = ok("pca", Map.of(), x);
        // columns a = x, b = [x[-1], x[0], ...], standardised: the covariance is the correlation
        // matrix [[1, rho], [rho, 1]], so the first component explains (1 + |rho|) / 2
        int n = x.length;
        double[] b = new double[n];
        for (int i = 0; i < n; i++) {
            b[i] = x[(i + n - 1) % n];
        }
        double rho = pearson(x, b);
        assertEquals((1 + Math.abs(rho)) / 2, r.get("explained_variance_ratio").get(0).asDouble(), 1e-12);
        assertEquals(2, r.get("n_components").asInt());
        assertEquals(n, r.get("transformed_data").size());
        assertEquals(1.0, r.get("total_variance_explained").asDouble(), 1e-12);
        for (String key : List.of("transformed_data", "explained_variance_ratio", "explained_variance", "components",
                "n_components", "total_variance_explained")) {
            assertTrue(r.has(key), key);
        }
    }

    static double pearson(double[] a, double[] b) {
        int n = a.length;
        double ma = 0;
        double mb = 0;
        for (int i = 0; i < n; i++) {
            ma += a[i] / n;
            mb += b[i] / n;
        }
        double sab = 0;
        double saa = 0;
        double sbb = 0;
        for (int i = 0; i < n; i++) {
            sab += (a[i] - ma) * (b[i] - mb);
            saa += (a[i] - ma) * (a[i] - ma);
            sbb += (b[i] - mb) * (b[i] - mb);
        }
        return sab / Math.sqrt(saa * sbb);
    }

    static final double[] SERIES = new double[40];

    static {
        for (int i = 0; i < SERIES.length; i++) {
            SERIES[i] = 10 + 0.5 * i + 3 * Math.sin(i * Math.PI / 2) + ((i * 7919) % 13) / 13.0;
        }
    }

    @Test
    void rows8And9ArimaForecastsFivePeriodsByDefaultWithTheOldKeys() throws Exception {
        JsonNode r = ok("arima", Map.of("order", "1,1,1"), SERIES);
        assertEquals(5, r.get("forecast").size());
        assertEquals(5, r.get("periods").asInt());
        doubles(r.get("forecast"));
        for (String key : List.of("forecast", "order", "periods", "model", "residuals", "aic", "bic")) {
            assertTrue(r.has(key), key);
        }
        // row 9, kept: statsmodels' ARIMA (the earlier engine's least-squares AR said "simplified_arima")
        assertEquals("ARIMA(1,1,1)", r.get("model").asText());
        assertEquals(7, ok("arima", Map.of("periods", "7"), SERIES).get("forecast").size());
    }

    // ------------------------------------------------------------------ seasonal_decompose (10, 11)

    @Test
    void row10SeasonalDecomposeArraysHoldOnlyNumbers() throws Exception {
        for (String model : List.of("additive", "multiplicative")) {
            JsonNode r = ok("seasonal_decompose", Map.of("period", "4", "model", model), SERIES);
            for (String key : List.of("trend", "seasonal", "residual", "original")) {
                assertEquals(SERIES.length, r.get(key).size(), key);
                doubles(r.get(key)); // a null fails here, as it fails a Rust Vec<f64>
            }
            assertEquals(model, r.get("model").asText());
        }
    }

    @Test
    void row11SeasonalDecomposePeriodDefaultsTo4AndShrinksWhenTooLong() throws Exception {
        JsonNode r = ok("seasonal_decompose", Map.of(), SERIES);
        assertEquals(4, r.get("period").asInt());
        assertFalse(r.get("period_adjusted").asBoolean());
        double[] ten = java.util.Arrays.copyOf(SERIES, 10);
        JsonNode s = ok("seasonal_decompose", Map.of("period", "12"), ten);
        assertEquals(5, s.get("period").asInt()); // max(2, 10 // 2)
        assertTrue(s.get("period_adjusted").asBoolean());
        assertEquals(12, s.get("period_requested").asInt());
        doubles(s.get("trend"));
        JsonNode auto = ok("seasonal_decompose", Map.of("period", "auto"), SERIES);
        assertTrue(auto.get("period_detected").asBoolean());
    }

    // ------------------------------------------------------------------ anomaly_detection (12-14)

    static final double[] RAMP = {1, 2, 3, 4, 5, 6, 7, 8, 9, 100};

    @Test
    void row12AnomalyThresholdDefaultsTo2ForTheEarlierEnginesMethods() throws Exception {
        for (String method : List.of("zscore", "iqr", "isolation")) {
            assertEquals(2.0, ok("anomaly_detection", Map.of("method", method), RAMP).get("threshold").asDouble(),
                    method);
        }
        assertEquals(2.0, ok("anomaly_detection", Map.of(), RAMP).get("threshold").asDouble());
        // zscore with 2.0: |x - mean| / population std > 2 flags only the 100
        JsonNode z = ok("anomaly_detection", Map.of("method", "zscore"), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 40);
        assertEquals(List.of(13.0), doubles(z.get("anomalies")));
        // kept ours where the earlier engine answered nothing
        assertEquals(3.5, ok("anomaly_detection", Map.of("method", "mad"), RAMP).get("threshold").asDouble());
        JsonNode keys = ok("anomaly_detection", Map.of(), RAMP);
        for (String key : List.of("anomalies", "scores", "method", "threshold", "n_anomalies", "anomaly_rate",
                "data_length")) {
            assertTrue(keys.has(key), key);
        }
    }

    @Test
    void row13IqrScoresAreDistancesBeyondTheFencesInDataUnits() throws Exception {
        JsonNode r = ok("anomaly_detection", Map.of("method", "iqr", "threshold", "2"), RAMP);
        // q1 = 3.25, q3 = 7.75, IQR = 4.5, fences -5.75 and 16.75
        List<Double> scores = doubles(r.get("scores"));
        for (int i = 0; i < 9; i++) {
            assertEquals(0.0, scores.get(i), "point " + i);
        }
        assertEquals(100 - 16.75, scores.get(9), 1e-12);
        assertEquals(List.of(9.0), doubles(r.get("anomalies")));
    }

    @Test
    void row14IsolationFlagsDistancesAboveTheQuantile() throws Exception {
        // distances from 5.5: 4.5, 3.5, ..., 0.5, 0.5, ..., 4.5; their 0.8 quantile is 3.7
        JsonNode r = ok("anomaly_detection", Map.of("method", "isolation"), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10);
        assertEquals(List.of(0.0, 9.0), doubles(r.get("anomalies")));
        assertEquals("isolation", r.get("method").asText());
        assertEquals(2, r.get("n_anomalies").asInt());
    }

    // ------------------------------------------------------------------ text (15, 17-20)

    static AnalysisRequest.Builder text(String algorithm, Map<String, String> params) {
        return req(algorithm).putAllParams(params);
    }

    @Test
    void row15SentimentKeepsVaderAndAddsTheOldWordCounts() throws Exception {
        JsonNode r = ok(text("sentiment_analysis", Map.of("text", "This is not good at all.")));
        assertEquals("negative", r.get("sentiment_label").asText()); // kept: VADER reads the negation
        assertEquals(1, r.get("positive_words_count").asInt());
        assertEquals(0, r.get("negative_words_count").asInt());
        assertEquals(6, r.get("total_words").asInt());
        for (String key : List.of("sentiment_score", "sentiment_label", "confidence", "method")) {
            assertTrue(r.has(key), key);
        }
    }

    @Test
    void row17TextSimilarityCountsWordsLikeTheEarlierEngine() throws Exception {
        Map<String, String> texts = Map.of("text1", "The cat sat on the mat", "text2", "the dog sat on a log");
        JsonNode cos = ok(text("text_similarity", texts));
        // raw counts: the=2,cat,sat,on,mat vs the,dog,sat,on,a,log: dot 4, norms^2 8 and 6
        assertEquals(4 / Math.sqrt(48), cos.get("similarity").asDouble(), 1e-15);
        assertEquals("cosine", cos.get("method").asText());
        assertEquals(5, cos.get("text1_words").asInt());
        assertEquals(6, cos.get("text2_words").asInt()); // one-letter "a" counts
        assertEquals(3, cos.get("common_words").asInt());
        assertEquals(8, cos.get("total_unique_words").asInt());
        java.util.HashMap<String, String> jac = new java.util.HashMap<>(texts);
        jac.put("method", "jaccard");
        assertEquals(3.0 / 8, ok(text("text_similarity", jac)).get("similarity").asDouble(), 1e-15);
        java.util.HashMap<String, String> tfidf = new java.util.HashMap<>(texts);
        tfidf.put("method", "tfidf_cosine");
        assertEquals("tfidf_cosine", ok(text("text_similarity", tfidf)).get("method").asText());
    }

    @Test
    void row18LevenshteinIsOneMinusEditDistanceOverTheLongerLength() throws Exception {
        JsonNode r = ok(text("text_similarity", Map.of("text1", "kitten", "text2", "sitting", "method", "levenshtein")));
        assertEquals(1 - 3.0 / 7, r.get("similarity").asDouble(), 1e-15);
        assertEquals("levenshtein", r.get("method").asText());
    }

    @Test
    void row19KeywordExtractionAddsTheOldCounts() throws Exception {
        JsonNode r = ok(text("keyword_extraction", Map.of("text",
                "Workers compute analytics. The engine sends analytics requests to workers; workers answer "
                        + "requests quickly.", "n_keywords", "3")));
        assertEquals(List.of("workers", "analytics", "requests"),
                List.of(r.get("keywords").get(0).asText(), r.get("keywords").get(1).asText(),
                        r.get("keywords").get(2).asText()));
        assertEquals(12, r.get("total_words").asInt()); // after removing the stop words "the", "to"
        assertEquals(8, r.get("unique_words").asInt());
        assertEquals(3, r.get("n_keywords").asInt());
        assertEquals(3, r.get("scores").size());
        assertEquals("tfidf", r.get("method").asText());
    }

    @Test
    void row20KeywordExtractionOfStopWordsOnlySucceedsEmpty() throws Exception {
        JsonNode r = ok(text("keyword_extraction", Map.of("text", "the and of it is")));
        assertEquals(0, r.get("keywords").size());
        assertTrue(r.get("keywords").isArray());
        assertEquals(0, r.get("n_keywords").asInt());
    }

    // ------------------------------------------------------------------ metadata (16, 21)

    @Test
    void row16MetadataIsSentEvenWhenOptionsLeaveIncludeMetadataFalse() {
        AnalysisOptions noMetadataFlag = AnalysisOptions.newBuilder().setPreferRust(true).setAllowPython(true)
                .setTimeoutMs(30000).build();
        for (String alg : List.of("mean", "kmeans")) {
            AnalysisResponse r = call(req(alg, 1, 2, 3, 10).setOptions(noMetadataFlag));
            assertTrue(r.getSuccess(), r.getErrorMessage());
            assertTrue(r.hasMetadata(), alg);
            assertEquals(alg, r.getMetadata().getAlgorithm());
            assertEquals(4, r.getMetadata().getDataSize());
        }
    }

    @Test
    void row21ImplementationSaysNativeOrPythonAndStatsCarryDataPoints() {
        AnalysisResponse nat = call(req("mean", 1, 2, 3));
        assertEquals("2.0", nat.getResultJson());
        assertEquals("native", nat.getMetadata().getImplementation());
        assertEquals("3", nat.getMetadata().getStatsMap().get("data_points"));
        AnalysisResponse py = call(req("kmeans", 1, 2, 3, 10).putParams("k", "2"));
        assertEquals("python", py.getMetadata().getImplementation());
        assertEquals("4", py.getMetadata().getStatsMap().get("data_points"));
        AlgorithmInfo mean = v7.getSupportedAlgorithms(Empty.getDefaultInstance()).getAlgorithmsList().stream()
                .filter(a -> a.getName().equals("mean")).findFirst().orElseThrow();
        assertEquals(List.of("native", "python"), mean.getImplementationsList());
    }

    // ------------------------------------------------------------------ where the earlier engine was wrong

    @Test
    void ourFixesStayRequestIdEchoedNoOptionsWorksNaNRefused() throws Exception {
        AnalysisResponse noOptions = v7.analyze(AnalysisRequest.newBuilder().setRequestId("bare").setAlgorithm("count")
                .addData(1).addData(2).build());
        assertTrue(noOptions.getSuccess(), noOptions.getErrorMessage());
        assertEquals("bare", noOptions.getRequestId());
        assertEquals("2", noOptions.getResultJson());
        AnalysisResponse nan = call(req("mean", 1, Double.NaN, 3));
        assertFalse(nan.getSuccess());
        assertTrue(nan.getErrorMessage().contains("data[1] is NaN"), nan.getErrorMessage());
        AnalysisResponse badParam = call(req("kmeans", 1, 2, 3).putParams("k", "three"));
        assertFalse(badParam.getSuccess());
        assertTrue(badParam.getErrorMessage().contains("param 'k'"), badParam.getErrorMessage());
        // BatchAnalyze answers each item with its request_id, metadata included
        BatchAnalysisRequest batch = BatchAnalysisRequest.newBuilder().setBatchId("b")
                .addRequests(req("correlation", 1, 2, 4).setRequestId("c"))
                .addRequests(req("mode", 2.5e-6, 2.5e-6, 3e-6).setRequestId("m")).build();
        Iterator<AnalysisResponse> it = v7.batchAnalyze(batch);
        int seen = 0;
        while (it.hasNext()) {
            AnalysisResponse r = it.next();
            assertTrue(r.getSuccess(), r.getErrorMessage());
            assertTrue(r.hasMetadata());
            if (r.getRequestId().equals("c")) {
                assertEquals(-1.0 / 42, Double.parseDouble(r.getResultJson()), 1e-16);
            } else {
                assertEquals("m", r.getRequestId());
                assertEquals(List.of(3e-6), doubles(ResultJson.mapper().readTree(r.getResultJson()).get("modes")));
            }
            seen++;
        }
        assertEquals(2, seen);
    }
}
