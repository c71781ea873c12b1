package analytics.engine.workers.launch;

import java.util.Map;

/**
 * What one launch needs.
 *
 * @param workerId the slot number (process title {@code analytics-worker[N]}, log prefix)
 * @param token    the one-time secret the worker presents in its hello
 * @param env      extra environment for this worker (on top of the launcher's own)
 * @param output   receives every line the worker writes to stdout/stderr (logged, kept for crash reports)
 */
public record LaunchSpec(int workerId, String token, Map<String, String> env, OutputSink output) {

    /** A line of worker output; {@code stream} is "stdout" or "stderr". */
    @FunctionalInterface
    public interface OutputSink {
        void line(String stream, String line);
    }
}
