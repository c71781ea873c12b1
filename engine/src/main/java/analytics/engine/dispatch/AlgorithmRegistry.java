package analytics.engine.dispatch;

import analytics.engine.dispatch.AlgorithmSpec.ParamSpec;
import analytics.engine.dispatch.AlgorithmSpec.ParamSpec.Type;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The one list of algorithms the engine serves, with their metadata. The statistics are declared here
 * (native kernels in {@code analytics.engine.stats.NativeStatistics}; every statistic also has a Python
 * twin, used with {@code prefer_rust=false} and for parity). The Python algorithms are not declared in
 * Java: they come from the worker package's catalogue ({@link PythonCatalogue}).
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

        for (AlgorithmSpec s : PythonCatalogue.load()) {
            if (testMode || !PythonCatalogue.testOnly(s)) {
                specs.put(s.name(), s);
            }
        }
    }

    private void stat(String name, int minPoints, String description, ParamSpec... extra) {
        List<ParamSpec> params = new java.util.ArrayList<>(List.of(extra));
        params.add(NAN_POLICY);
        specs.put(name, new AlgorithmSpec(name, "statistics", description, true, true, "series", minPoints,
                List.copyOf(params)));
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
