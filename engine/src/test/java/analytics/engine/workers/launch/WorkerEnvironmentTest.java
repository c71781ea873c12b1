package analytics.engine.workers.launch;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.HashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;

class WorkerEnvironmentTest {

    @Test
    void dropsWhatTheLauncherSetForTheJvmOnlyAndKeepsTheRest() {
        Map<String, String> env = new HashMap<>(Map.of(
                "MALLOC_ARENA_MAX", "1", "MALLOC_TRIM_THRESHOLD_", "1073741824", "MALLOC_MMAP_THRESHOLD_", "16777216",
                "MALLOC_TOP_PAD_", "0", // the operator's own: not listed, so the workers get it too
                "PATH", "/usr/bin", WorkerEnvironment.JVM_ONLY, " MALLOC_ARENA_MAX  MALLOC_MMAP_THRESHOLD_ MALLOC_TRIM_THRESHOLD_ "));
        WorkerEnvironment.prepare(env, Map.of("OMP_NUM_THREADS", "1"));
        assertEquals(Map.of("MALLOC_TOP_PAD_", "0", "PATH", "/usr/bin", "OMP_NUM_THREADS", "1"), env);
    }

    @Test
    void withoutTheListNothingIsDroppedAndAdditionsWin() {
        Map<String, String> env = new HashMap<>(Map.of("MALLOC_ARENA_MAX", "2", "OMP_NUM_THREADS", "4"));
        WorkerEnvironment.prepare(env, Map.of("OMP_NUM_THREADS", "1"));
        assertEquals(Map.of("MALLOC_ARENA_MAX", "2", "OMP_NUM_THREADS", "1"), env);
    }

    @Test
    void anEmptyListDropsOnlyItself() {
        Map<String, String> env = new HashMap<>(Map.of("PATH", "/bin", WorkerEnvironment.JVM_ONLY, ""));
        WorkerEnvironment.prepare(env, Map.of());
        assertEquals(Map.of("PATH", "/bin"), env);
    }
}
