package analytics.engine.workers;

import static org.junit.jupiter.api.Assertions.assertEquals;

import analytics.engine.config.EngineConfig;
import java.time.Duration;
import org.junit.jupiter.api.Test;

/** The pool's defaults for what is also an engine setting are the settings' defaults (no second copy). */
class WorkerPoolConfigTest {

    @Test
    void defaultsAreTheEngineSettingsDefaults() {
        WorkerPoolConfig d = WorkerPoolConfig.defaults();
        assertEquals(Duration.ofSeconds(Long.parseLong(EngineConfig.defaultOf("worker_startup_timeout_s"))), d.startupTimeout());
        assertEquals(Duration.ofMillis(Long.parseLong(EngineConfig.defaultOf("queue_wait_ms"))), d.borrowWait());
        assertEquals(Integer.parseInt(EngineConfig.defaultOf("worker_max_requests")), d.maxRequests());
        assertEquals(Long.parseLong(EngineConfig.defaultOf("worker_max_rss_mb")) << 20, d.maxRssBytes());
        assertEquals(Integer.parseInt(EngineConfig.defaultOf("max_concurrent")), d.maxConcurrent());
        assertEquals(Integer.parseInt(EngineConfig.defaultOf("rate_limit")), d.rateLimitPerSecond());
    }
}
