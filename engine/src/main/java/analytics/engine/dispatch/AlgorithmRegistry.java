package analytics.engine.dispatch;

import analytics.engine.dispatch.AlgorithmSpec.ParamSpec;
import analytics.engine.dispatch.AlgorithmSpec.ParamSpec.Type;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The one list of algorithms the engine serves, with their metadata. Native kernels are in
 * {@code analytics.engine.stats.NativeStatistics}; Python ones in {@code py-worker/analytics_worker}.
 * Every statistic also has a Python implementation (used with {@code prefer_rust=false} and for parity).
 */
public final class AlgorithmRegistry {

    private static final ParamSpec NAN_POLICY = ParamSpec.opt("nan_policy", Type.STRING, "raise",
            "raise (default): NaN/Inf in data is an error; omit: drop them first");

    private final Map<String, AlgorithmSpec> specs = new LinkedHashMap<>();

    public AlgorithmRegistry() {
        this(false);
    }

    /**
     * @param testMode also list the workers' test-only algorithms ({@code _test_sleep}, {@code _test_echo},
     *                 ...; see py-worker/PROTOCOL.md). Only the test suites and the bench set it
     *                 (setting test_mode); in production those names are unknown algorithms.
     */
    public AlgorithmRegistry(boolean testMode) {
        stat("mean", 1, "Arithmetic mean");
        stat("median", 1, "Median (50th percentile, linear interpolation)");
        stat("std", 2, "Sample standard deviation (n-1)");
        stat("variance", 2, "Sample variance (n-1)");
        stat("min", 1, "Minimum");
        stat("max", 1, "Maximum");
        stat("range", 1, "max - min");
        stat("percentile", 1, "Percentile with linear interpolation between closest ranks (numpy default)",
                ParamSpec.opt("percentile", Type.NUMBER, "50", "0..100"));
        stat("q1", 1, "First quartile (25th percentile)");
        stat("q3", 1, "Third quartile (75th percentile)");
        stat("iqr", 1, "Interquartile range q3 - q1");
        stat("mode", 1, "Most frequent value(s), values binned at 6 decimals (half away from zero)");
        stat("skewness", 3, "Bias-corrected sample skewness");
        stat("kurtosis", 4, "Bias-corrected sample excess kurtosis");
        stat("count", 1, "Number of data points (integer)");
        stat("correlation", 2, "Lag-1 autocorrelation with the global mean (as the earlier engine)");
        stat("summary", 2, "count, mean, median, std, variance, min, max, range, q25, q75, autocorr, "
                + "skewness, kurtosis in one pass");

        py("kmeans", "ml", "matrix", 1, "K-means clustering (scikit-learn KMeans); 1-D data clusters scalars",
                ParamSpec.opt("k", Type.INT, "3", "number of clusters (3 when absent, as the earlier engine)"),
                ParamSpec.opt("max_iter", Type.INT, "300", "maximum iterations"),
                ParamSpec.opt("random_state", Type.INT, "42", "seed"));
        py("dbscan", "ml", "matrix", 1, "Density-based clustering (scikit-learn DBSCAN)",
                ParamSpec.opt("eps", Type.NUMBER, "0.5", "neighbourhood radius"),
                ParamSpec.opt("min_samples", Type.INT, "5", "points to form a core point"));
        py("pca", "ml", "matrix", 2, "Principal component analysis (scikit-learn PCA); 1-D data uses the "
                        + "standardised columns [x, x shifted by one], as the earlier engine",
                ParamSpec.opt("n_components", Type.INT, "2", "components to keep"));
        py("linear_regression", "ml", "matrix", 2, "Least-squares linear regression; 1-D data is fitted "
                        + "against its index; matrix data uses the target vector or the target column",
                ParamSpec.opt("target", Type.INT, "", "column index of the target in a matrix (instead of the target vector)"),
                ParamSpec.opt("fit_intercept", Type.BOOL, "true", "fit an intercept"));
        py("random_forest", "ml", "matrix", 2, "Random forest regressor (classifier for integral targets "
                        + "with few classes); reports importances and OOB score",
                ParamSpec.opt("target", Type.INT, "", "column index of the target in a matrix"),
                ParamSpec.opt("n_estimators", Type.INT, "100", "trees"),
                ParamSpec.opt("max_depth", Type.INT, "", "maximum depth (empty = unlimited)"),
                ParamSpec.opt("random_state", Type.INT, "42", "seed"));
        py("arima", "timeseries", "series", 5, "ARIMA model (statsmodels) with forecast and confidence intervals",
                ParamSpec.opt("order", Type.INT_LIST, "1,1,1", "p,d,q"),
                ParamSpec.opt("periods", Type.INT, "5", "steps to forecast"));
        py("seasonal_decompose", "timeseries", "series", 4, "Seasonal decomposition (statsmodels)",
                ParamSpec.opt("period", Type.STRING, "4", "season length, or auto (detected); longer than half "
                        + "the series: max(2, n // 2)"),
                ParamSpec.opt("model", Type.STRING, "additive", "additive or multiplicative"),
                ParamSpec.opt("extrapolate_trend", Type.STRING, "freq", "freq: extrapolate the trend's edges "
                        + "(no null); 0: leave them NaN"));
        py("trend_analysis", "timeseries", "series", 3, "Mann-Kendall trend test with Theil-Sen slope",
                ParamSpec.opt("alpha", Type.NUMBER, "0.05", "significance level"));
        py("anomaly_detection", "timeseries", "series", 3, "Anomalies by zscore, iqr, isolation, mad or "
                        + "isolation_forest",
                ParamSpec.opt("method", Type.STRING, "zscore", "zscore, iqr, isolation, mad or isolation_forest"),
                ParamSpec.opt("threshold", Type.NUMBER, "", "2.0 for zscore, iqr and isolation (as the earlier "
                        + "engine), 3.5 for mad; isolation_forest: the model's own"));
        py("sentiment_analysis", "text", "text", 0, "Lexicon sentiment (VADER) of texts or params.text, with the "
                        + "earlier engine's word counts",
                ParamSpec.opt("text", Type.STRING, "", "text (when no texts are given)"));
        py("text_similarity", "text", "text", 0, "Similarity of text1/text2 or a pairwise matrix of texts",
                ParamSpec.opt("text1", Type.STRING, "", "first text"),
                ParamSpec.opt("text2", Type.STRING, "", "second text"),
                ParamSpec.opt("method", Type.STRING, "cosine", "cosine (word counts), jaccard, levenshtein or "
                        + "tfidf_cosine"));
        py("keyword_extraction", "text", "text", 0, "Top keywords by TF-IDF",
                ParamSpec.opt("text", Type.STRING, "", "text (when no texts are given)"),
                ParamSpec.opt("n_keywords", Type.INT, "5", "keywords to return"),
                ParamSpec.opt("method", Type.STRING, "tfidf", "tfidf or frequency"));
        if (testMode) {
            testOnly();
        }
    }

    private void testOnly() {
        ParamSpec seconds = ParamSpec.opt("seconds", Type.NUMBER, "1", "how long");
        py("_test_sleep", "test", "matrix", 0, "TEST MODE: sleeps params.seconds", seconds);
        py("_test_hang", "test", "matrix", 0, "TEST MODE: never returns");
        py("_test_crash", "test", "matrix", 0, "TEST MODE: the worker exits mid-request",
                ParamSpec.opt("code", Type.INT, "3", "exit status"));
        py("_test_alloc", "test", "matrix", 0, "TEST MODE: allocates memory without bound");
        py("_test_garbage", "test", "matrix", 0, "TEST MODE: the worker writes a malformed frame");
        py("_test_echo", "test", "matrix", 0, "TEST MODE: returns n, sum and shape of the data (transport)");
    }

    private void stat(String name, int minPoints, String description, ParamSpec... extra) {
        List<ParamSpec> params = new java.util.ArrayList<>(List.of(extra));
        params.add(NAN_POLICY);
        specs.put(name, new AlgorithmSpec(name, "statistics", description, true, true, "series", minPoints,
                List.copyOf(params)));
    }

    private void py(String name, String category, String input, int minPoints, String description,
                    ParamSpec... params) {
        List<ParamSpec> list = new java.util.ArrayList<>(List.of(params));
        if (!input.equals("text")) {
            list.add(NAN_POLICY);
        }
        specs.put(name, new AlgorithmSpec(name, category, description, false, true, input, minPoints,
                List.copyOf(list)));
    }

    public AlgorithmSpec get(String name) {
        return specs.get(name);
    }

    public Collection<AlgorithmSpec> all() {
        return specs.values();
    }

    public java.util.Set<String> names() {
        return specs.keySet();
    }
}
