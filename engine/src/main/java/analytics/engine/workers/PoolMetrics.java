package analytics.engine.workers;

import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;
import java.util.List;

/**
 * The pool's meters ({@code analytics.python.*}): counters and timers the request path and the supervisor's
 * events record, and the gauges read from the pool (workers by state, their resident memory). Names and tags
 * are listed in docs/WORKERS.md ("Visibility"); {@link PoolStatus} is the same state for {@code /health}.
 */
final class PoolMetrics {

    final Counter restarts;
    final Counter timeouts;
    final Counter recycles;
    final Counter crashes;
    final Counter retries;
    final Timer roundTrip;
    final Counter sharedMemoryRequests;
    final Counter cancelledQueued;
    final Counter cancelledStopped;
    final Counter cancelledKilled;
    final Timer cancelRelease;

    PoolMetrics(MeterRegistry meters, PythonWorkerPool pool) {
        this.restarts = Counter.builder("analytics.python.worker.restarts").description("worker processes started to replace another").register(meters);
        this.timeouts = Counter.builder("analytics.python.timeouts").description("requests answered TIMEOUT at their deadline").register(meters);
        this.recycles = Counter.builder("analytics.python.worker.recycles").description("workers recycled (max requests / RSS)").register(meters);
        this.crashes = Counter.builder("analytics.python.worker.crashes").description("unexpected worker exits").register(meters);
        this.retries = Counter.builder("analytics.python.retries").description("requests retried after their worker died").register(meters);
        this.sharedMemoryRequests = Counter.builder("analytics.python.shm.requests")
                .description("requests whose arrays went to the worker through a runtime-dir file (data_file)").register(meters);
        Counter.Builder cancelled = Counter.builder("analytics.python.cancellations")
                .description("Python requests cancelled by their client (or its lost connection), by how they ended");
        this.cancelledQueued = cancelled.tag("how", "queued").register(meters);
        this.cancelledStopped = cancelled.tag("how", "stopped").register(meters);
        this.cancelledKilled = cancelled.tag("how", "killed").register(meters);
        this.cancelRelease = Timer.builder("analytics.python.cancel.release")
                .description("from a running request's cancellation to its worker free again (or replaced)")
                .publishPercentileHistogram().register(meters);
        this.roundTrip = Timer.builder("analytics.python.roundtrip").description("Python request round trip").publishPercentileHistogram().register(meters);
        for (String st : List.of("ready", "busy", "starting", "down")) {
            Gauge.builder("analytics.python.workers", pool, p -> p.countByState().getOrDefault(st, 0))
                    .tag("state", st).description("Python workers by state").register(meters);
        }
        // Monitoring (deploy/prometheus): the workers share the unit's cgroup, so MemoryMax covers them too.
        Gauge.builder("analytics.python.workers.resident.memory", pool, PythonWorkerPool::workersRssBytes)
                .baseUnit("bytes")
                .description("Resident memory of all live Python worker processes, as last measured by their pings")
                .register(meters);
    }
}
