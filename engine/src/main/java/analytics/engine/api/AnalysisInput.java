package analytics.engine.api;

import java.util.List;
import java.util.Map;

/**
 * A validated request, as handed to an implementation (native kernel or Python worker).
 *
 * @param data    row-major values, {@code rows * cols} of them, already checked for NaN/Inf
 * @param rows    number of rows (points) n
 * @param cols    number of columns d (1 for a plain series)
 * @param matrix  true when the client sent an explicit shape [n, d] (even if d == 1)
 * @param target  supervised target vector of length rows, or null
 * @param texts   documents for text algorithms (may be empty, never null)
 * @param params  string parameters exactly as the client sent them
 */
public record AnalysisInput(
        String requestId,
        String algorithm,
        double[] data,
        int rows,
        int cols,
        boolean matrix,
        double[] target,
        List<String> texts,
        Map<String, String> params) {
}
