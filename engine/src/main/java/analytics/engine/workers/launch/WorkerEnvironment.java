package analytics.engine.workers.launch;

import java.util.Map;

/**
 * The environment a Python process (a spawned worker, the fork-server template) starts with: the engine's own,
 * minus what the launcher set for the JVM alone, plus the pool's additions.
 *
 * <p>The launcher ({@code scripts/analytics-server}) tunes glibc's malloc for the JVM through the environment
 * ({@code MALLOC_ARENA_MAX}, {@code MALLOC_MMAP_THRESHOLD_}, {@code MALLOC_TRIM_THRESHOLD_}: freed network buffers
 * stay with glibc while busy and the JVM's malloc_trim returns them) and names the variables it set in
 * {@value #JVM_ONLY}. A worker must not inherit them: it never calls malloc_trim, so numpy arrays below 16 MiB would
 * stay resident after every large request. Variables the operator set are not in that list and reach both.
 */
final class WorkerEnvironment {

    /** Space-separated names of variables the launcher set for the JVM only. */
    static final String JVM_ONLY = "ANALYTICS_JVM_ONLY_ENV";

    private WorkerEnvironment() {
    }

    /** Turns {@code env} (a copy of the engine's environment, e.g. {@code ProcessBuilder.environment()}) into a worker's. */
    static void prepare(Map<String, String> env, Map<String, String> additions) {
        String names = env.remove(JVM_ONLY);
        if (names != null) {
            for (String name : names.trim().split("\\s+")) {
                if (!name.isEmpty()) {
                    env.remove(name);
                }
            }
        }
        env.putAll(additions);
    }
}
