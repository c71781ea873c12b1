package analytics.engine.workers;

import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;

/** Child JVM for the kill -9 test: starts a 2-worker pool, prints the worker pids (and the fork-server template's), then waits to be killed. */
public final class PoolChildMain {
    public static void main(String[] args) throws Exception {
        WorkerPoolConfig cfg = WorkerPoolConfig.defaults(Path.of(args[0])).withWorkers(2)
                .withExtraEnv(Map.of("PYTHONPATH", args[1]));
        PythonWorkerPool pool = new PythonWorkerPool(cfg, new SimpleMeterRegistry());
        pool.start();
        if (!pool.awaitReady(Duration.ofSeconds(30), true)) {
            System.out.println("NOT READY " + pool.status());
            System.exit(2);
        }
        StringBuilder sb = new StringBuilder("WORKER_PIDS");
        @SuppressWarnings("unchecked")
        List<Map<String, Object>> ws = (List<Map<String, Object>>) pool.status().get("worker_list");
        for (Map<String, Object> w : ws) {
            sb.append(' ').append(w.get("pid"));
        }
        Object start = pool.status().get("worker_start"); // fork-server mode: the template must go too
        if (start instanceof Map<?, ?> m && m.get("template_pid") instanceof Number tpl && tpl.longValue() > 0) {
            sb.append(' ').append(tpl);
        }
        System.out.println(sb);
        System.out.flush();
        Thread.sleep(Long.MAX_VALUE);
    }
}
