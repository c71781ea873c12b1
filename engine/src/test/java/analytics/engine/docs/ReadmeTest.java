package analytics.engine.docs;

import static org.junit.jupiter.api.Assertions.assertTrue;

import analytics.engine.config.EngineConfig;
import analytics.engine.dispatch.AlgorithmRegistry;
import analytics.engine.dispatch.AlgorithmSpec;
import analytics.engine.proto.ErrorCode;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/** Keeps the README true: every setting, algorithm and error code the code knows is documented there. */
class ReadmeTest {

    static String readme() throws Exception {
        return Files.readString(Path.of(System.getProperty("analytics.repo.root", ".."), "README.md"));
    }

    @Test
    void readmeOpensWithTheTwoCommands() throws Exception {
        String head = readme().lines().limit(6).reduce("", (a, b) -> a + b + "\n");
        assertTrue(head.contains("./scripts/build.sh && ./scripts/run.sh"), head);
        assertTrue(head.contains("./scripts/test.sh"), head);
    }

    @Test
    void everySettingIsInTheConfigurationTable() throws Exception {
        String r = readme();
        for (EngineConfig.Setting s : EngineConfig.SETTINGS) {
            assertTrue(r.contains("| `" + s.key() + "` | `" + s.env() + "` |"), "README lacks setting " + s.key());
        }
    }

    @Test
    void everyAlgorithmAndErrorCodeIsDocumented() throws Exception {
        String r = readme();
        for (AlgorithmSpec s : new AlgorithmRegistry().all()) {
            assertTrue(r.contains("`" + s.name() + "`"), "README lacks algorithm " + s.name());
        }
        for (ErrorCode c : ErrorCode.values()) {
            if (c != ErrorCode.ERROR_CODE_UNSPECIFIED && c != ErrorCode.UNRECOGNIZED) {
                assertTrue(r.contains("`" + c.name() + "`"), "README lacks error code " + c.name());
            }
        }
    }

    @Test
    void pythonAlgorithmRowsShowTheCataloguesParams() throws Exception {
        String r = readme();
        for (AlgorithmSpec s : new AlgorithmRegistry().all()) {
            if (!s.nativeImpl()) {
                String row = "| `" + s.name() + "` | python | " + analytics.engine.dispatch.AlgorithmTable.params(s) + " | ";
                assertTrue(r.contains(row), "README row of " + s.name() + " should start with: " + row);
            }
        }
    }
}
