package analytics.engine.config;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class EngineConfigTest {

    @Test
    void defaults() throws Exception {
        EngineConfig c = EngineConfig.load(null, null, Map.of(), Map.of());
        assertEquals("127.0.0.1:50051", c.listen().toString());
        assertEquals(64 * 1024 * 1024, c.maxMessageBytes());
        assertEquals(Runtime.getRuntime().availableProcessors(), c.workers());
        assertEquals(100, c.maxConcurrent());
        assertEquals("info", c.logLevel());
    }

    @Test
    void precedenceIsDefaultsThenFileThenEnvThenFlags(@TempDir Path dir) throws Exception {
        Path toml = dir.resolve("analytics.toml");
        Files.writeString(toml, """
                listen = "127.0.0.1:6000"
                workers = 3
                [limits]
                max_batch_size = 50
                max_concurrent = 7
                """);
        Map<String, String> env = Map.of("ANALYTICS_WORKERS", "4", "ANALYTICS_MAX_CONCURRENT", "9");
        Map<String, String> flags = new HashMap<>();
        flags.put("workers", "5");
        flags.put("listen", null); // flag not given
        EngineConfig c = EngineConfig.load(toml, null, env, flags);
        assertEquals("127.0.0.1:6000", c.listen().toString()); // file
        assertEquals(50, c.maxBatchSize());                    // file (table)
        assertEquals(9, c.maxConcurrent());                    // env beats file
        assertEquals(5, c.workers());                          // flag beats env
        String described = String.join("\n", c.describe());
        assertTrue(described.contains("# command line"), described);
        assertTrue(described.contains("# env ANALYTICS_MAX_CONCURRENT"), described);
        assertTrue(described.contains("# file " + toml), described);
    }

    @Test
    void configFileFromEnvironmentAndOptionalDefault(@TempDir Path dir) throws Exception {
        Path toml = dir.resolve("a.toml");
        Files.writeString(toml, "max_batch_size = 12\n");
        assertEquals(12, EngineConfig.load(null, null, Map.of("ANALYTICS_CONFIG", toml.toString()), Map.of()).maxBatchSize());
        assertEquals(12, EngineConfig.load(null, toml, Map.of(), Map.of()).maxBatchSize());
        // a missing optional default file is fine; a missing explicit one is not
        assertEquals(10000, EngineConfig.load(null, dir.resolve("none.toml"), Map.of(), Map.of()).maxBatchSize());
        var e = assertThrows(EngineConfig.ConfigException.class,
                () -> EngineConfig.load(dir.resolve("none.toml"), null, Map.of(), Map.of()));
        assertTrue(e.getMessage().contains("does not exist"), e.getMessage());
    }

    @Test
    void badValuesAreRefusedWithTheSettingNamed(@TempDir Path dir) throws Exception {
        var e = assertThrows(EngineConfig.ConfigException.class, () -> EngineConfig.load(null, null,
                Map.of("ANALYTICS_LISTEN_ADDR", "nohost", "ANALYTICS_WORKERS", "-1", "ANALYTICS_LOG", "loud"), Map.of()));
        assertTrue(e.getMessage().contains("listen = 'nohost' (env ANALYTICS_LISTEN_ADDR)"), e.getMessage());
        assertTrue(e.getMessage().contains("workers = '-1'"), e.getMessage());
        assertTrue(e.getMessage().contains("log_level = 'loud'"), e.getMessage());
        Path toml = dir.resolve("bad.toml");
        Files.writeString(toml, "listn = \"x\"\n");
        e = assertThrows(EngineConfig.ConfigException.class, () -> EngineConfig.load(toml, null, Map.of(), Map.of()));
        assertTrue(e.getMessage().contains("unknown setting 'listn'"), e.getMessage());
        Files.writeString(toml, "worker_preload = true\n");
        e = assertThrows(EngineConfig.ConfigException.class, () -> EngineConfig.load(toml, null, Map.of(), Map.of()));
        assertTrue(e.getMessage().contains("worker_start = \"spawn-preload\""), e.getMessage());
        Files.writeString(toml, "worker_start = \"forkserver\"\n");
        e = assertThrows(EngineConfig.ConfigException.class, () -> EngineConfig.load(toml, null, Map.of(), Map.of()));
        assertTrue(e.getMessage().contains("must be one of fork-server, spawn, spawn-preload"), e.getMessage());
        Files.writeString(toml, "worker_start = \"spawn-preload\"\n");
        assertEquals(analytics.engine.workers.launch.WorkerStartMode.SPAWN_PRELOAD,
                EngineConfig.load(toml, null, Map.of(), Map.of()).workerStart());
        Files.writeString(toml, "listen = [\n");
        e = assertThrows(EngineConfig.ConfigException.class, () -> EngineConfig.load(toml, null, Map.of(), Map.of()));
        assertTrue(e.getMessage().contains("cannot read config file"), e.getMessage());
        e = assertThrows(EngineConfig.ConfigException.class, () -> EngineConfig.load(null, null,
                Map.of("ANALYTICS_TLS_CERT", "/x.pem"), Map.of()));
        assertTrue(e.getMessage().contains("tls_cert and tls_key must be set together"), e.getMessage());
    }

    @Test
    void authTokenIsNeverPrinted() throws Exception {
        EngineConfig c = EngineConfig.load(null, null, Map.of("ANALYTICS_AUTH_TOKEN", "hunter2-secret"), Map.of());
        String described = String.join("\n", c.describe());
        assertTrue(!described.contains("hunter2"), described);
        assertTrue(described.contains("<set, 14 characters>"), described);
    }

    @Test
    void shmThresholdDefaultsToOneMibAndRefusesNegatives() throws Exception {
        assertEquals(1L << 20, EngineConfig.load(null, null, Map.of(), Map.of()).shmThresholdBytes());
        assertEquals(0, EngineConfig.load(null, null, Map.of("ANALYTICS_SHM_THRESHOLD_BYTES", "0"), Map.of()).shmThresholdBytes());
        var e = assertThrows(EngineConfig.ConfigException.class, () -> EngineConfig.load(null, null,
                Map.of("ANALYTICS_SHM_THRESHOLD_BYTES", "-1"), Map.of()));
        assertTrue(e.getMessage().contains("shm_threshold_bytes = '-1'"), e.getMessage());
    }
}
