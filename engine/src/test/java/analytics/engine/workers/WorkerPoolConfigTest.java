package analytics.engine.workers;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import analytics.engine.config.EngineConfig;
import analytics.engine.workers.launch.WorkerStartMode;
import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.api.Test;

/** The pool's defaults for what is also an engine setting are the settings' defaults (no second copy). */
class WorkerPoolConfigTest {

    @Test
    void defaultsAreTheEngineSettingsDefaults() {
        WorkerPoolConfig d = WorkerPoolConfig.defaults(Path.of("python3"));
        assertEquals(Duration.ofSeconds(Long.parseLong(EngineConfig.defaultOf("worker_startup_timeout_s"))), d.timeouts().startup());
        assertEquals(Duration.ofMillis(Long.parseLong(EngineConfig.defaultOf("queue_wait_ms"))), d.timeouts().borrowWait());
        assertEquals(Integer.parseInt(EngineConfig.defaultOf("worker_max_requests")), d.recycling().maxRequests());
        assertEquals(Long.parseLong(EngineConfig.defaultOf("worker_max_rss_mb")) << 20, d.recycling().maxRssBytes());
        assertEquals(Integer.parseInt(EngineConfig.defaultOf("max_concurrent")), d.limits().maxConcurrent());
        assertEquals(Integer.parseInt(EngineConfig.defaultOf("rate_limit")), d.limits().rateLimitPerSecond());
        assertEquals(WorkerStartMode.parse(EngineConfig.defaultOf("worker_start")), d.startMode());
        assertEquals(Boolean.parseBoolean(EngineConfig.defaultOf("test_mode")), d.testMode());
    }

    @Test
    void eachGroupValidatesItsOwnValues() {
        Duration s = Duration.ofSeconds(1);
        assertThrows(IllegalArgumentException.class, () -> new WorkerPoolConfig.Timeouts(s, Duration.ofMillis(-1), s, s, s));
        assertThrows(IllegalArgumentException.class, () -> new WorkerPoolConfig.Timeouts(Duration.ZERO, Duration.ZERO, s, s, s));
        assertThrows(IllegalArgumentException.class, () -> new WorkerPoolConfig.Recycling(-1, 0));
        assertThrows(IllegalArgumentException.class, () -> new WorkerPoolConfig.Restart(s, s, 0));
        assertThrows(IllegalArgumentException.class, () -> new WorkerPoolConfig.Breaker(0f, 20, 10, s));
        assertThrows(IllegalArgumentException.class, () -> new WorkerPoolConfig.Limits(0, 0));
        assertThrows(IllegalArgumentException.class, () -> WorkerPoolConfig.defaults(Path.of("python3")).withWorkers(0));
        assertThrows(IllegalArgumentException.class, () -> WorkerPoolConfig.defaults(Path.of("python3")).withMaxFrameBytes(1024));
    }

    @Test
    void aGroupWitherChangesOnlyItsValue() {
        WorkerPoolConfig d = WorkerPoolConfig.defaults(Path.of("python3"));
        WorkerPoolConfig c = d.withTimeouts(d.timeouts().withBorrowWait(Duration.ofMillis(250)));
        assertEquals(Duration.ofMillis(250), c.timeouts().borrowWait());
        assertEquals(d.timeouts().startup(), c.timeouts().startup());
        assertEquals(d.withTimeouts(c.timeouts()), c);
        assertEquals(d.limits(), c.limits());
    }
}
