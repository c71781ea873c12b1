package analytics.engine.workers.launch;

import java.util.Locale;

/** How the pool starts its workers (setting {@code worker_start}). */
public enum WorkerStartMode {
    /** Fork each worker from a template that imported everything once (default; falls back to SPAWN). */
    FORK_SERVER("fork-server"),
    /** A fresh interpreter per worker; heavy libraries are imported by each worker's first request that needs them. */
    SPAWN("spawn"),
    /** A fresh interpreter per worker that imports the heavy libraries before its hello ({@code --preload}). */
    SPAWN_PRELOAD("spawn-preload");

    private final String setting;

    WorkerStartMode(String setting) {
        this.setting = setting;
    }

    /** The value as written in the configuration. */
    public String setting() {
        return setting;
    }

    /** Parses a setting value; IllegalArgumentException names the accepted values. */
    public static WorkerStartMode parse(String value) {
        String v = value == null ? "" : value.trim().toLowerCase(Locale.ROOT);
        for (WorkerStartMode m : values()) {
            if (m.setting.equals(v)) {
                return m;
            }
        }
        throw new IllegalArgumentException("must be one of fork-server, spawn, spawn-preload");
    }
}
