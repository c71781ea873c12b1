package analytics.engine;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import analytics.engine.workers.PythonWorkerPool;
import analytics.engine.workers.WorkerTestSupport;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;

/** A real worker's hello declares its algorithms exactly as the engine's catalogue copy does. */
class CatalogueHelloTest {

    @Test
    void aRealWorkersHelloMatchesTheEnginesCatalogue() throws Exception {
        try (PythonWorkerPool pool = new PythonWorkerPool(WorkerTestSupport.config().withWorkers(1),
                new SimpleMeterRegistry())) {
            pool.start();
            assertTrue(pool.awaitReady(Duration.ofSeconds(60)), "worker did not start");
            assertTrue(pool.algorithmInfo().containsKey("kmeans"));
            assertEquals(List.of(), PythonWiring.checkCatalogue(pool, true));
        }
    }
}
