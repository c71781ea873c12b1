package analytics.engine.stats;

import analytics.engine.api.AnalysisException;
import java.util.Map;

/**
 * A native statistic over a 1-D series. The returned value is serialised with Jackson as the
 * {@code result_json}: a {@link Double} becomes a bare JSON number, a {@link Long} an integer, a
 * {@link java.util.Map} (use {@link java.util.LinkedHashMap} for a stable key order) an object.
 * NaN/Inf never reach a kernel (the dispatcher rejects or omits them first).
 */
@FunctionalInterface
public interface NativeKernel {
    Object compute(double[] data, Map<String, String> params) throws AnalysisException;
}
