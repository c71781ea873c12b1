package analytics.engine.config;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ch.qos.logback.classic.Level;
import ch.qos.logback.classic.Logger;
import ch.qos.logback.classic.LoggerContext;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;

/** The engine's logging set-up in code: the line format, the level property and the quieter libraries. */
class LogSetupTest {

    @Test
    void writesTheEngineLineFormatAtTheConfiguredLevel() {
        PrintStream stdout = System.out;
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        String level = System.getProperty("analytics.log.level");
        String pattern = System.getProperty("analytics.log.pattern");
        LoggerContext ctx = new LoggerContext();
        if (ctx.getMDCAdapter() == null) {
            ctx.setMDCAdapter(new ch.qos.logback.classic.util.LogbackMDCAdapter());
        }
        try {
            System.setOut(new PrintStream(buf, true, StandardCharsets.UTF_8));
            System.setProperty("analytics.log.level", "WARN");
            System.setProperty("analytics.log.pattern", LogSetup.PATTERN_WITHOUT_TIME);
            LogSetup.apply(ctx); // the console appender binds System.out when it starts
            Logger root = ctx.getLogger(Logger.ROOT_LOGGER_NAME);
            assertEquals(Level.WARN, root.getLevel());
            assertEquals(Level.WARN, ctx.getLogger("io.grpc").getLevel());
            assertEquals(Level.ERROR, ctx.getLogger("io.netty.bootstrap").getLevel());
            ctx.getMDCAdapter().put("request_id", "r-1");
            ctx.getLogger("analytics.engine.Main").warn("hello");
            ctx.getMDCAdapter().remove("request_id");
            ctx.getLogger("analytics.engine.Main").warn("plain");
            ctx.getLogger("analytics.engine.Main").info("not shown");
        } finally {
            ctx.stop();
            System.setOut(stdout);
            restore("analytics.log.level", level);
            restore("analytics.log.pattern", pattern);
        }
        String out = buf.toString(StandardCharsets.UTF_8);
        assertTrue(out.contains("WARN  Main [req=r-1] - hello"), out);
        assertTrue(out.contains("WARN  Main - plain"), out);
        assertTrue(!out.contains("not shown"), out);
        assertTrue(LogSetup.PATTERN.startsWith("%d{") && LogSetup.PATTERN.endsWith(LogSetup.PATTERN_WITHOUT_TIME));
    }

    private static void restore(String key, String value) {
        if (value == null) {
            System.clearProperty(key);
        } else {
            System.setProperty(key, value);
        }
    }
}
