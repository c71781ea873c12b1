package analytics.engine;

import analytics.engine.config.EngineConfig;
import analytics.engine.metrics.EngineMetrics;
import analytics.engine.workers.PythonBackend;
import java.io.PrintStream;

/** Builds the Python worker pool from the engine configuration. */
final class PythonWiring {

    private PythonWiring() {
    }

    static PythonBackend start(EngineConfig cfg, String python, EngineMetrics metrics) {
        if (cfg.workers() == 0) {
            return null;
        }
        throw new IllegalStateException("POOL-WIRE: the Python worker pool is not in this build; run with --workers 0");
    }

    static void whenReady(PythonBackend py, Runnable action) {
        if (py == null) {
            action.run();
            return;
        }
        action.run();
    }

    static int testPython(EngineConfig cfg, String python, PrintStream out, PrintStream err) {
        err.println("analytics-server: --test-python: the Python worker pool is not in this build yet");
        return 1;
    }
}
