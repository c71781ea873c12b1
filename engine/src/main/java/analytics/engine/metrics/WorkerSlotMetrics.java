package analytics.engine.metrics;

import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import java.util.List;
import java.util.Map;
import java.util.function.Function;

/**
 * Per-worker meters (tag {@code worker} = the slot id of /health's worker list) for the dashboard of
 * deploy/grafana: each slot's state, the requests and resident memory of the process now in it, and its
 * restarts. They read the pool's status map (the same one /health shows), so they need nothing from the pool's
 * internals; one status snapshot serves a whole scrape.
 */
public final class WorkerSlotMetrics<T> {

    /** The states of a slot, as /health reports them (a replaced process still finishing is "retiring"). */
    static final List<String> STATES = List.of("ready", "busy", "starting", "down");
    private static final long SNAPSHOT_NANOS = 500_000_000L;

    private final Function<T, Map<String, Object>> status;
    private Map<String, Object> snapshot = Map.of();
    private long snapshotAt;
    private boolean haveSnapshot;

    private WorkerSlotMetrics(Function<T, Map<String, Object>> status) {
        this.status = status;
    }

    /**
     * Registers the meters of slots 0..slots-1; {@code status} gives the pool's status() (see /health). Micrometer
     * holds {@code pool} weakly, as for every gauge: the meters live as long as the pool, and nothing here keeps
     * them alive on their own (a meter object only they referenced would be collected and read NaN).
     */
    public static <T> void bind(MeterRegistry registry, int slots, T pool, Function<T, Map<String, Object>> status) {
        WorkerSlotMetrics<T> m = new WorkerSlotMetrics<>(status);
        for (int i = 0; i < slots; i++) {
            final int slot = i;
            String id = Integer.toString(slot);
            for (String state : STATES) {
                Gauge.builder("analytics.python.slot.state", pool, p -> state.equals(m.field(p, slot, "state")) ? 1 : 0)
                        .tags("worker", id, "state", state)
                        .description("1 for the state each Python worker slot is in (ready, busy, starting, down), else 0")
                        .register(registry);
            }
            FunctionCounter.builder("analytics.python.slot.requests", pool, p -> m.number(p, slot, "requests"))
                    .tag("worker", id)
                    .description("Requests served by the worker process now in this slot (from 0 again when it is replaced)")
                    .register(registry);
            FunctionCounter.builder("analytics.python.slot.restarts", pool, p -> m.number(p, slot, "restarts"))
                    .tag("worker", id)
                    .description("Worker processes started in this slot to replace another")
                    .register(registry);
            Gauge.builder("analytics.python.slot.resident.memory", pool, p -> {
                double rss = m.number(p, slot, "rss_bytes");
                return rss >= 0 ? rss : Double.NaN; // -1: not measured yet (no ping answered) or no process
            }).tag("worker", id).baseUnit("bytes")
                    .description("Resident memory of the worker process in this slot, as measured by its last ping")
                    .register(registry);
        }
    }

    private double number(T pool, int slot, String key) {
        Object v = field(pool, slot, key);
        return v instanceof Number n ? n.doubleValue() : Double.NaN;
    }

    /** The slot's entry of the worker list; a retiring (replaced) process is skipped for its successor. */
    private synchronized Object field(T pool, int slot, String key) {
        long now = System.nanoTime();
        if (!haveSnapshot || now - snapshotAt > SNAPSHOT_NANOS) {
            snapshot = status.apply(pool);
            snapshotAt = now;
            haveSnapshot = true;
        }
        Object list = snapshot.get("worker_list");
        if (!(list instanceof List<?> workers)) {
            return null;
        }
        Object found = null;
        for (Object o : workers) {
            if (o instanceof Map<?, ?> w && w.get("id") instanceof Number n && n.intValue() == slot) {
                if (!"retiring".equals(w.get("state"))) {
                    return w.get(key);
                }
                // only the replaced process is left: its successor is starting; restarts count per slot
                found = "state".equals(key) ? "starting" : "restarts".equals(key) ? w.get(key) : null;
            }
        }
        return found;
    }
}
