package analytics.engine;

import analytics.engine.config.BuildInfo;
import analytics.engine.config.EngineConfig;
import analytics.engine.config.EngineConfig.ConfigException;
import analytics.engine.dispatch.AlgorithmRegistry;
import analytics.engine.dispatch.Dispatcher;
import analytics.engine.metrics.EngineMetrics;
import analytics.engine.server.EngineServer;
import analytics.engine.stats.NativeStatistics;
import analytics.engine.api.PythonBackend;
import java.io.PrintStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code analytics-server}: the engine's command line. */
@Command(name = "analytics-server", sortOptions = false, usageHelpAutoWidth = true,
        description = {
            "Analytics Engine: gRPC analytics service (analytics.AnalyticsEngine) with native Java statistics "
                + "and supervised Python workers. Serves gRPC, GET /health and GET /metrics on one port.",
            "",
            "Configuration precedence: defaults < TOML file < ANALYTICS_* environment < flags. "
                + "See --print-config for every setting and where its value came from."},
        footer = {"", "Signals: SIGTERM/SIGINT drain and exit 0; SIGHUP replaces the Python workers one by one.",
            "Exit codes: 0 ok, 1 unhealthy / test failed, 2 bad configuration or usage, 3 failed to start.",
            "Docs: README.md (API, configuration table), docs/DEPLOY.md."})
public final class Main implements Callable<Integer> {

    @Option(names = "--config", paramLabel = "FILE", description = "TOML config file (default: config/analytics.toml when present)")
    Path configFile;

    @Option(names = "--listen", paramLabel = "ADDR", description = "TCP host:port for gRPC + HTTP (default 127.0.0.1:50051)")
    String listen;

    @Option(names = "--socket", paramLabel = "PATH", description = "also serve gRPC on this Unix domain socket")
    String socket;

    @Option(names = "--workers", paramLabel = "N", description = "Python worker processes (default: CPU cores; 0 disables Python)")
    Integer workers;

    @Option(names = "--python", paramLabel = "EXE", description = "Python executable for the workers")
    String python;

    @Option(names = "--print-config", description = "print the effective configuration and exit")
    boolean printConfig;

    @Option(names = "--print-algorithms", description = "print every algorithm with its params (types, defaults, "
            + "allowed values) as a Markdown table and exit; the Python ones as the worker package declares them")
    boolean printAlgorithms;

    @Option(names = {"-V", "--version"}, description = "print version, git commit, Java and Python versions and exit")
    boolean version;

    @Option(names = "--health-check", description = "ask the running local server for /health; exit 0 healthy, 1 not")
    boolean healthCheck;

    @Option(names = "--test-python", description = "start one Python worker, run one algorithm, print the result")
    boolean testPython;

    @Option(names = {"-h", "--help"}, usageHelp = true, description = "show this help and exit")
    boolean help;

    private final PrintStream out = System.out;
    private final PrintStream err = System.err;

    public static void main(String[] args) {
        // picocli answers usage errors with exit code 2 and --help with 0.
        System.exit(new CommandLine(new Main()).execute(args));
    }

    @Override
    public Integer call() {
        EngineConfig cfg;
        try {
            Map<String, String> flags = new LinkedHashMap<>();
            flags.put("listen", listen);
            flags.put("socket_path", socket);
            flags.put("workers", workers == null ? null : workers.toString());
            flags.put("python", python);
            cfg = EngineConfig.load(configFile, defaultConfigFile(), System.getenv(), flags);
        } catch (ConfigException e) {
            err.println("analytics-server: " + e.getMessage());
            return 2;
        }
        // Logging is configured from the config before the first logger is created.
        System.setProperty("analytics.log.level", cfg.logLevel().toUpperCase(java.util.Locale.ROOT));
        if (!cfg.logTimestamps()) {
            System.setProperty("analytics.log.pattern", analytics.engine.config.LogSetup.PATTERN_WITHOUT_TIME);
        }
        // grpc-java logs through java.util.logging: route it into the same log.
        org.slf4j.bridge.SLF4JBridgeHandler.removeHandlersForRootLogger();
        org.slf4j.bridge.SLF4JBridgeHandler.install();
        if (printConfig) {
            cfg.describe().forEach(out::println);
            out.println("# python executable resolved to: " + resolvePython(cfg));
            return 0;
        }
        if (printAlgorithms) {
            analytics.engine.dispatch.AlgorithmTable.markdown(new AlgorithmRegistry(cfg.testMode())).forEach(out::println);
            return 0;
        }
        if (version) {
            out.println("analytics-server " + BuildInfo.VERSION + " (git " + BuildInfo.GIT_COMMIT + ")");
            out.println("java " + Runtime.version() + " (" + System.getProperty("java.vm.name") + ")");
            out.println("python " + pythonVersion(resolvePython(cfg)));
            return 0;
        }
        if (healthCheck) {
            return healthCheck(cfg);
        }
        if (testPython) {
            return PythonWiring.testPython(cfg, resolvePython(cfg), out, err);
        }
        return serve(cfg);
    }

    private static Path defaultConfigFile() {
        String home = System.getProperty("analytics.home");
        return home == null ? Path.of("config", "analytics.toml") : Path.of(home, "config", "analytics.toml");
    }

    /**
     * Python for the workers: the configured one, else the deployed venv ({@code analytics.home}), else
     * the checkout's dev venv next to the jar (never a path relative to the current directory).
     */
    static String resolvePython(EngineConfig cfg) {
        if (!cfg.python().isEmpty()) {
            return cfg.python();
        }
        List<Path> candidates = new java.util.ArrayList<>();
        String home = System.getProperty("analytics.home");
        if (home != null) {
            candidates.add(Path.of(home, "venv", "bin", "python"));
        }
        Path jarDir = jarDirectory();
        if (jarDir != null) {
            candidates.add(jarDir.resolve("../../py-worker/.venv/bin/python").normalize());
            candidates.add(jarDir.resolve("../venv/bin/python").normalize());
        }
        for (Path c : candidates) {
            if (Files.isExecutable(c)) {
                return c.toString();
            }
        }
        return "python3";
    }

    private static Path jarDirectory() {
        try {
            Path p = Path.of(Main.class.getProtectionDomain().getCodeSource().getLocation().toURI());
            return Files.isDirectory(p) ? p : p.getParent();
        } catch (Exception e) {
            return null;
        }
    }

    private static String pythonVersion(String exe) {
        try {
            Process p = new ProcessBuilder(exe, "--version").redirectErrorStream(true).start();
            String v = new String(p.getInputStream().readAllBytes()).trim();
            p.waitFor();
            return (v.startsWith("Python ") ? v.substring(7) : v) + " (" + exe + ")";
        } catch (Exception e) {
            return "not found (" + exe + "): " + e.getMessage();
        }
    }

    private int healthCheck(EngineConfig cfg) {
        EngineConfig.HostPort hp = cfg.listen();
        String host = hp.host().equals("0.0.0.0") || hp.host().equals("::") ? "127.0.0.1" : hp.host();
        if (host.contains(":")) {
            host = "[" + host + "]";
        }
        boolean tls = !cfg.tlsCert().isEmpty();
        URI uri = URI.create((tls ? "https://" : "http://") + host + ":" + hp.port() + "/health");
        try {
            HttpClient.Builder cb = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(3))
                    .version(HttpClient.Version.HTTP_1_1);
            if (tls) {
                // Trust exactly the server's own configured certificate; the name in it need not be 127.0.0.1,
                // so hostname verification is off for this one local request (the pinned cert replaces it).
                System.setProperty("jdk.internal.httpclient.disableHostnameVerification", "true");
                cb.sslContext(trustOnly(Path.of(cfg.tlsCert())));
            }
            HttpClient client = cb.build();
            HttpResponse<String> r = client.send(HttpRequest.newBuilder(uri).timeout(Duration.ofSeconds(5)).GET().build(),
                    HttpResponse.BodyHandlers.ofString());
            out.println(r.body().trim());
            if (r.statusCode() == 200) {
                return 0;
            }
            err.println("analytics-server: not healthy (HTTP " + r.statusCode() + " from " + uri + ")");
            return 1;
        } catch (Exception e) {
            err.println("analytics-server: no server answering at " + uri + " (" + e.getClass().getSimpleName()
                    + (e.getMessage() == null ? "" : ": " + e.getMessage()) + ")");
            return 1;
        }
    }

    private static javax.net.ssl.SSLContext trustOnly(Path certChain) throws Exception {
        java.security.KeyStore ks = java.security.KeyStore.getInstance(java.security.KeyStore.getDefaultType());
        ks.load(null, null);
        try (java.io.InputStream in = Files.newInputStream(certChain)) {
            int i = 0;
            for (java.security.cert.Certificate c : java.security.cert.CertificateFactory.getInstance("X.509")
                    .generateCertificates(in)) {
                ks.setCertificateEntry("c" + i++, c);
            }
        }
        javax.net.ssl.TrustManagerFactory tmf = javax.net.ssl.TrustManagerFactory.getInstance(
                javax.net.ssl.TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(ks);
        javax.net.ssl.SSLContext ctx = javax.net.ssl.SSLContext.getInstance("TLS");
        ctx.init(null, tmf.getTrustManagers(), null);
        return ctx;
    }

    /**
     * Runs every native kernel and the JSON writer once on a small series, so the first client request
     * does not pay for class loading and interpretation (it would take ~100 ms instead of ~1 ms).
     */
    private static void warmUp(Logger log) {
        long t0 = System.nanoTime();
        double[] data = new double[2048];
        java.util.Random random = new java.util.Random(42);
        for (int i = 0; i < data.length; i++) {
            data[i] = random.nextGaussian();
        }
        for (var e : NativeStatistics.KERNELS.entrySet()) {
            try {
                analytics.engine.dispatch.ResultJson.write(e.getValue().compute(data, Map.of()));
            } catch (Exception ex) {
                log.warn("warm-up of {} failed: {}", e.getKey(), ex.getMessage());
            }
        }
        log.debug("warm-up took {} ms", (System.nanoTime() - t0) / 1_000_000);
    }

    /**
     * Under systemd with WatchdogSec=, pings the watchdog at half its interval while the server answers
     * its own health probe path in-process (a wedged engine stops pinging and systemd restarts it).
     */
    private static void startWatchdog(EngineServer server) {
        long interval = analytics.engine.server.SystemdNotify.watchdogIntervalMillis();
        if (interval <= 0) {
            return;
        }
        var timer = java.util.concurrent.Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "systemd-watchdog");
            t.setDaemon(true);
            return t;
        });
        timer.scheduleAtFixedRate(() -> {
            if (server.alive()) {
                analytics.engine.server.SystemdNotify.watchdogPing();
            }
        }, interval / 2, interval / 2, java.util.concurrent.TimeUnit.MILLISECONDS);
    }

    private int serve(EngineConfig cfg) {
        Logger log = LoggerFactory.getLogger(Main.class);
        log.info("analytics-server {} (git {}) starting on Java {}", BuildInfo.VERSION, BuildInfo.GIT_COMMIT,
                Runtime.version());
        if (cfg.testMode()) {
            log.warn("TEST MODE: the workers' _test_* algorithms are reachable; never use this in production");
        }
        EngineMetrics metrics = new EngineMetrics();
        // One set of network event loops for the gRPC connections and the worker connections, shut down once,
        // after both the server and the pool have stopped (EngineServer.newSharedLoops says why).
        io.netty.channel.EventLoopGroup loops = EngineServer.newSharedLoops();
        Runnable closeLoops = () -> {
            if (loops != null) {
                loops.shutdownGracefully(0, 1, java.util.concurrent.TimeUnit.SECONDS)
                        .awaitUninterruptibly(3, java.util.concurrent.TimeUnit.SECONDS);
            }
        };
        PythonBackend py;
        try {
            py = PythonWiring.start(cfg, resolvePython(cfg), metrics, loops);
        } catch (Exception e) {
            log.error("cannot start the Python workers: {}", e.getMessage());
            closeLoops.run();
            return 3;
        }
        Dispatcher dispatcher = new Dispatcher(new AlgorithmRegistry(cfg.testMode()), NativeStatistics.KERNELS, py, metrics,
                new Dispatcher.Limits(cfg.maxDataPoints(), cfg.defaultTimeoutMs()));
        EngineServer server = new EngineServer(cfg, dispatcher, metrics, loops);
        try {
            server.start();
        } catch (Exception e) {
            log.error("cannot listen: {}", e.getMessage()
                    + (String.valueOf(e.getMessage()).contains("in use") || e.getCause() instanceof java.net.BindException
                    ? " (is another analytics-server running? change --listen / ANALYTICS_LISTEN_ADDR)" : ""));
            if (py != null) {
                py.close();
            }
            closeLoops.run();
            return 3;
        }
        // Gives memory back when the engine is idle after start-up or after a burst (bench/README.md, "Idle trim").
        analytics.engine.server.IdleTrim idleTrim = analytics.engine.server.IdleTrim.forServer(server.callActivity(),
                metrics.registry());
        CountDownLatch stopped = new CountDownLatch(1);
        Runnable stop = () -> {
            idleTrim.close();
            if (py != null) {
                py.markStopping(); // before the drain: no worker may start while stopping (issue 11)
            }
            log.info("stopping: draining in-flight requests (grace {} s)", cfg.shutdownGraceS());
            Signals.notifyStopping();
            server.shutdown(Duration.ofSeconds(cfg.shutdownGraceS()));
            if (py != null) {
                py.close();
            }
            closeLoops.run();
            log.info("stopped");
            stopped.countDown();
        };
        Signals.install(stop, () -> {
            if (py != null) {
                log.info("SIGHUP: rolling restart of the Python workers");
                Signals.notifyReloading();
                py.reload();
                Signals.notifyReady("reloaded");
            }
        });
        // The port is open before the warm-up and before the workers are ready (/health says 503 until
        // they are): start-up costs run side by side, not in series.
        Thread warm = new Thread(() -> warmUp(log), "warm-up");
        warm.setDaemon(true);
        warm.start();
        PythonWiring.whenReady(py, () -> {
            log.info("ready: {}", py == null ? "native only (workers = 0)" : "Python workers up");
            Signals.notifyReady("serving on " + cfg.listen());
            idleTrim.startAfter(warm);
        });
        startWatchdog(server);
        try {
            stopped.await();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        return 0;
    }
}
