package analytics.engine.config;

import ch.qos.logback.classic.Level;
import ch.qos.logback.classic.Logger;
import ch.qos.logback.classic.LoggerContext;
import ch.qos.logback.classic.encoder.PatternLayoutEncoder;
import ch.qos.logback.classic.spi.Configurator;
import ch.qos.logback.classic.spi.ConfiguratorRank;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.core.ConsoleAppender;
import ch.qos.logback.core.spi.ContextAwareBase;

/**
 * The engine's logging set-up, in code rather than a {@code logback.xml}: reading XML loads logback's Joran
 * configurator and the JDK's XML parser, ~600 classes that stayed loaded for the process's life (2 MiB of
 * metaspace; bench/README.md, "Sixth pass"). Logback finds this class through
 * {@code META-INF/services/ch.qos.logback.classic.spi.Configurator}.
 *
 * <p>One console appender (stdout; journald under systemd) with {@link #PATTERN}, or the pattern in the
 * system property {@code analytics.log.pattern}; the root level from {@code analytics.log.level} (default
 * INFO). {@code Main} sets both from the config before the first logger is created. gRPC and Netty log
 * warnings only; {@code io.netty.bootstrap} errors only (grpc-netty sets SO_KEEPALIVE on every child
 * channel, which Unix sockets do not have). An operator's own file, {@code -Dlogback.configurationFile=...},
 * still wins, and so does a {@code logback-test.xml} on the class path (the unit tests'): then this set-up
 * steps aside and logback reads that file as usual.
 */
@ConfiguratorRank(ConfiguratorRank.CUSTOM_HIGH_PRIORITY)
public final class LogSetup extends ContextAwareBase implements Configurator {

    /** A line without its timestamp: what {@code Main} sets when the config says log_timestamps = false. */
    public static final String PATTERN_WITHOUT_TIME =
            "%-5level %logger{0}%replace( [req=%X{request_id}]){' \\[req=\\]', ''} - %msg%n";

    /** The default line: ISO-8601 time with milliseconds and the UTC offset ({@code XXX}: "Z" or "+01:00"). */
    public static final String PATTERN = "%d{yyyy-MM-dd'T'HH:mm:ss.SSSXXX} " + PATTERN_WITHOUT_TIME;

    @Override
    public ExecutionStatus configure(LoggerContext ctx) {
        if (System.getProperty("logback.configurationFile") != null
                || LogSetup.class.getClassLoader().getResource("logback-test.xml") != null) {
            return ExecutionStatus.INVOKE_NEXT_IF_ANY;
        }
        apply(ctx);
        return ExecutionStatus.DO_NOT_INVOKE_NEXT_IF_ANY;
    }

    /** The engine's set-up on {@code ctx} (the test calls it on a context of its own). */
    static void apply(LoggerContext ctx) {
        PatternLayoutEncoder encoder = new PatternLayoutEncoder();
        encoder.setContext(ctx);
        encoder.setPattern(System.getProperty("analytics.log.pattern", PATTERN));
        encoder.start();
        ConsoleAppender<ILoggingEvent> stdout = new ConsoleAppender<>();
        stdout.setContext(ctx);
        stdout.setName("STDOUT");
        stdout.setEncoder(encoder);
        stdout.start();
        Logger root = ctx.getLogger(Logger.ROOT_LOGGER_NAME);
        root.setLevel(Level.toLevel(System.getProperty("analytics.log.level"), Level.INFO));
        root.addAppender(stdout);
        ctx.getLogger("io.grpc").setLevel(Level.WARN);
        ctx.getLogger("io.netty").setLevel(Level.WARN);
        ctx.getLogger("io.netty.bootstrap").setLevel(Level.ERROR);
    }
}
