package analytics.engine.config;

import analytics.engine.workers.launch.WorkerStartMode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.toml.TomlMapper;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.function.Function;

/**
 * Engine configuration. Precedence, lowest first: built-in defaults &lt; TOML file
 * (config/analytics.toml or --config / ANALYTICS_CONFIG) &lt; ANALYTICS_* environment variables &lt;
 * command-line flags.
 *
 * <p>Every setting is one {@link Setting}: its TOML key, its environment variable, its default and a
 * description. The README's configuration table is the list printed by {@code --print-config}.
 */
public final class EngineConfig {

    /** The default of setting {@code key} as written in {@link #SETTINGS} (lower layers read theirs from here). */
    public static String defaultOf(String key) {
        return SETTINGS.stream().filter(s -> s.key().equals(key)).findFirst()
                .orElseThrow(() -> new IllegalArgumentException("no setting " + key)).defaultValue();
    }

    /** One configuration setting. */
    public record Setting(String key, String env, String defaultValue, String description) {
    }

    public static final List<Setting> SETTINGS = List.of(
            new Setting("listen", "ANALYTICS_LISTEN_ADDR", "127.0.0.1:50051",
                    "TCP address for gRPC and HTTP (/health, /metrics); host:port, 0.0.0.0:50051 for remote"),
            new Setting("socket_path", "ANALYTICS_SOCKET_PATH", "",
                    "also serve gRPC on this Unix domain socket (mode 0660; a stale file is replaced)"),
            new Setting("workers", "ANALYTICS_WORKERS", "",
                    "number of Python worker processes (empty = number of CPU cores; 0 = no Python)"),
            new Setting("python", "ANALYTICS_PYTHON", "",
                    "Python executable for the workers (empty = <home>/venv or py-worker/.venv)"),
            new Setting("runtime_dir", "ANALYTICS_RUNTIME_DIR", "",
                    "private directory for worker sockets (empty = $RUNTIME_DIRECTORY or a fresh temp dir)"),
            new Setting("max_message_mb", "ANALYTICS_MAX_MESSAGE_MB", "64",
                    "largest inbound gRPC message, in MiB"),
            new Setting("flow_window_mb", "ANALYTICS_FLOW_WINDOW_MB", "16",
                    "initial HTTP/2 flow-control window (per call and per connection), in MiB: an 8 MB request "
                            + "arrives without waiting for WINDOW_UPDATE round trips; bounds what one connection "
                            + "may send before the engine reads it"),
            new Setting("max_data_points", "ANALYTICS_MAX_DATA_POINTS", "20000000",
                    "largest number of data values in one request"),
            new Setting("stream_max_points", "ANALYTICS_STREAM_MAX_POINTS", "",
                    "AnalyzeStream: most values gathered for algorithms that need the whole series (mode, "
                            + "Python ones); empty = max_data_points, at most max_data_points"),
            new Setting("stream_exact_max_points", "ANALYTICS_STREAM_EXACT_MAX_POINTS", "4000000",
                    "AnalyzeStream: quantiles are exact up to this many values (8 bytes each, per stream), "
                            + "estimated by a KLL sketch beyond"),
            new Setting("stream_exact_total_mb", "ANALYTICS_STREAM_EXACT_TOTAL_MB", "256",
                    "AnalyzeStream: MiB all streams together may hold for exact quantiles; a stream that "
                            + "would exceed it switches to the KLL sketch early"),
            new Setting("stream_sketch_k", "ANALYTICS_STREAM_SKETCH_K", "4096",
                    "AnalyzeStream: KLL sketch parameter k (8..65535); larger = smaller rank error"),
            new Setting("max_batch_size", "ANALYTICS_MAX_BATCH_SIZE", "10000",
                    "largest number of requests in one BatchAnalyze call"),
            new Setting("batch_concurrency", "ANALYTICS_BATCH_CONCURRENCY", "8",
                    "items of one BatchAnalyze call computed at the same time"),
            new Setting("default_timeout_ms", "ANALYTICS_DEFAULT_TIMEOUT_MS", "30000",
                    "timeout of a request that sets no options.timeout_ms and no gRPC deadline"),
            new Setting("max_concurrent", "ANALYTICS_MAX_CONCURRENT", "100",
                    "Python requests admitted at the same time (bulkhead); more get OVERLOADED"),
            new Setting("queue_wait_ms", "ANALYTICS_QUEUE_WAIT_MS", "0",
                    "optional cap on how long a Python request waits for a free worker; 0 = up to the request's own "
                    + "deadline (timeout_ms or gRPC deadline, the smaller). A wait that reaches it is OVERLOADED"),
            new Setting("rate_limit", "ANALYTICS_RATE_LIMIT", "0",
                    "Python requests per second (0 = unlimited)"),
            new Setting("worker_max_requests", "ANALYTICS_WORKER_MAX_REQUESTS", "10000",
                    "recycle a worker after this many requests (with 10% jitter)"),
            new Setting("worker_max_rss_mb", "ANALYTICS_WORKER_MAX_RSS_MB", "1024",
                    "recycle a worker whose resident memory exceeds this, in MiB"),
            new Setting("worker_startup_timeout_s", "ANALYTICS_WORKER_STARTUP_TIMEOUT_S", "60",
                    "seconds a worker may take to start and say hello"),
            new Setting("worker_start", "ANALYTICS_WORKER_START", "fork-server",
                    "how workers start: fork-server (forked warm from one template that imported the libraries once: "
                    + "fast first request, shared memory), spawn (a fresh interpreter each; first ML request pays the "
                    + "imports), spawn-preload (a fresh interpreter each that imports everything first, ~185 MiB each)"),
            new Setting("shm_threshold_bytes", "ANALYTICS_SHM_THRESHOLD_BYTES", "1048576",
                    "arrays of at least this many bytes go to the Python workers through a file of the private runtime "
                    + "directory that they map without copying, instead of msgpack bytes (0 = always msgpack)"),
            new Setting("shutdown_grace_s", "ANALYTICS_SHUTDOWN_GRACE_S", "20",
                    "seconds in-flight requests get to finish on SIGTERM"),
            new Setting("log_level", "ANALYTICS_LOG", "info",
                    "log level: error, warn, info, debug, trace"),
            new Setting("log_timestamps", "ANALYTICS_LOG_TIMESTAMPS", "true",
                    "prefix log lines with a timestamp (set false under systemd: journald adds its own)"),
            new Setting("auth_token", "ANALYTICS_AUTH_TOKEN", "",
                    "when set, gRPC calls and /metrics need 'authorization: Bearer <token>'"),
            new Setting("tls_cert", "ANALYTICS_TLS_CERT", "",
                    "PEM certificate chain: serve TLS on the TCP port (needs tls_key)"),
            new Setting("tls_key", "ANALYTICS_TLS_KEY", "",
                    "PEM private key (PKCS#8) for tls_cert"),
            new Setting("test_mode", "ANALYTICS_TEST_MODE", "false",
                    "test suites only: enables the workers' _test_* algorithms"));

    private final Map<String, String> values;
    private final Map<String, String> origins;

    private EngineConfig(Map<String, String> values, Map<String, String> origins) {
        this.values = values;
        this.origins = origins;
    }

    /**
     * Loads configuration.
     *
     * @param tomlFile explicit TOML file (must exist), or null to use ANALYTICS_CONFIG or the optional default
     * @param defaultToml optional default file used only when it exists, may be null
     * @param env environment (System.getenv() in production)
     * @param overrides values from command-line flags (keys as in {@link #SETTINGS})
     */
    public static EngineConfig load(Path tomlFile, Path defaultToml, Map<String, String> env,
                                    Map<String, String> overrides) throws ConfigException {
        Map<String, String> values = new LinkedHashMap<>();
        Map<String, String> origins = new LinkedHashMap<>();
        for (Setting s : SETTINGS) {
            values.put(s.key(), s.defaultValue());
            origins.put(s.key(), "default");
        }
        Path file = tomlFile;
        if (file == null && env.get("ANALYTICS_CONFIG") != null && !env.get("ANALYTICS_CONFIG").isBlank()) {
            file = Path.of(env.get("ANALYTICS_CONFIG"));
        }
        if (file != null && !Files.isRegularFile(file)) {
            throw new ConfigException("config file " + file + " does not exist or is not a file");
        }
        if (file == null && defaultToml != null && Files.isRegularFile(defaultToml)) {
            file = defaultToml;
        }
        if (file != null) {
            readToml(file, values, origins);
        }
        for (Setting s : SETTINGS) {
            String v = env.get(s.env());
            if (v != null) {
                values.put(s.key(), v.trim());
                origins.put(s.key(), "env " + s.env());
            }
        }
        overrides.forEach((k, v) -> {
            if (!values.containsKey(k)) {
                throw new IllegalArgumentException("unknown setting " + k);
            }
            if (v != null) {
                values.put(k, v);
                origins.put(k, "command line");
            }
        });
        EngineConfig cfg = new EngineConfig(values, origins);
        cfg.validate();
        return cfg;
    }

    private static void readToml(Path file, Map<String, String> values, Map<String, String> origins)
            throws ConfigException {
        ObjectMapper toml = new TomlMapper();
        Map<?, ?> tree;
        try {
            tree = toml.readValue(file.toFile(), Map.class);
        } catch (IOException e) {
            throw new ConfigException("cannot read config file " + file + ": " + e.getMessage());
        }
        Map<String, Object> flat = new LinkedHashMap<>();
        flatten("", tree, flat);
        for (Map.Entry<String, Object> e : flat.entrySet()) {
            if (e.getKey().equals("worker_preload")) { // removed by issue 11: say what replaces it
                throw new ConfigException("setting 'worker_preload' in " + file + " was replaced by worker_start: "
                        + "worker_start = \"spawn-preload\" is the old worker_preload = true; the default, "
                        + "\"fork-server\", starts every worker warm (see README)");
            }
            if (!values.containsKey(e.getKey())) {
                throw new ConfigException("unknown setting '" + e.getKey() + "' in " + file
                        + " (known: " + String.join(", ", values.keySet()) + ")");
            }
            values.put(e.getKey(), String.valueOf(e.getValue()));
            origins.put(e.getKey(), "file " + file);
        }
    }

    /** Accepts both flat keys and tables ([server] listen = ... becomes listen). */
    private static void flatten(String prefix, Map<?, ?> tree, Map<String, Object> out) {
        for (Map.Entry<?, ?> e : tree.entrySet()) {
            if (e.getValue() instanceof Map<?, ?> m) {
                flatten("", m, out);
            } else {
                out.put(prefix + e.getKey(), e.getValue());
            }
        }
    }

    private void validate() throws ConfigException {
        List<String> errors = new ArrayList<>();
        check(errors, "listen", v -> HostPort.parse(v) != null ? null : "must be host:port, e.g. 127.0.0.1:50051");
        check(errors, "workers", v -> v.isEmpty() || isInt(v, 0, 256) ? null : "must be an integer 0..256 or empty");
        for (String k : List.of("max_message_mb", "max_data_points", "max_batch_size", "batch_concurrency",
                "default_timeout_ms", "max_concurrent", "worker_max_requests", "worker_max_rss_mb",
                "worker_startup_timeout_s")) {
            check(errors, k, v -> isInt(v, 1, Integer.MAX_VALUE) ? null : "must be a positive integer");
        }
        check(errors, "stream_max_points", v -> v.isEmpty() || (isInt(v, 1, Integer.MAX_VALUE)
                && isInt(values.get("max_data_points"), Long.parseLong(v.trim()), Integer.MAX_VALUE)) ? null
                : "must be empty or a positive integer no larger than max_data_points");
        check(errors, "stream_exact_max_points", v -> isInt(v, 0, Integer.MAX_VALUE - 16) ? null
                : "must be an integer 0..2147483631");
        check(errors, "stream_exact_total_mb", v -> isInt(v, 0, 1 << 20) ? null : "must be an integer 0..1048576");
        check(errors, "stream_sketch_k", v -> isInt(v, 8, 65535) ? null : "must be an integer 8..65535");
        check(errors, "rate_limit", v -> isInt(v, 0, Integer.MAX_VALUE) ? null : "must be an integer >= 0");
        check(errors, "queue_wait_ms", v -> isInt(v, 0, Integer.MAX_VALUE) ? null
                : "must be an integer >= 0 (0 = wait up to the request's deadline)");
        check(errors, "shm_threshold_bytes", v -> isInt(v, 0, Long.MAX_VALUE) ? null : "must be an integer >= 0");
        check(errors, "shutdown_grace_s", v -> isInt(v, 0, 3600) ? null : "must be an integer 0..3600");
        check(errors, "log_level", v -> List.of("error", "warn", "info", "debug", "trace")
                .contains(v.toLowerCase(Locale.ROOT)) ? null : "must be one of error, warn, info, debug, trace");
        check(errors, "log_timestamps", v -> isBool(v) ? null : "must be true or false");
        check(errors, "test_mode", v -> isBool(v) ? null : "must be true or false");
        check(errors, "worker_start", v -> {
            try {
                WorkerStartMode.parse(v);
                return null;
            } catch (IllegalArgumentException e) {
                return e.getMessage();
            }
        });
        check(errors, "max_message_mb", v -> isInt(v, 1, 2047) ? null : "must be 1..2047");
        // HTTP/2 caps a window at 2^31 - 1 bytes
        check(errors, "flow_window_mb", v -> isInt(v, 1, 2047) ? null : "must be 1..2047");
        if (tlsCert().isEmpty() != tlsKey().isEmpty()) {
            errors.add("tls_cert and tls_key must be set together");
        }
        if (!errors.isEmpty()) {
            throw new ConfigException("invalid configuration:\n  " + String.join("\n  ", errors));
        }
    }

    private void check(List<String> errors, String key, Function<String, String> rule) {
        String problem = rule.apply(values.get(key));
        if (problem != null) {
            errors.add(key + " = '" + values.get(key) + "' (" + origins.get(key) + "): " + problem);
        }
    }

    private static boolean isInt(String v, long min, long max) {
        try {
            long x = Long.parseLong(v.trim());
            return x >= min && x <= max;
        } catch (NumberFormatException e) {
            return false;
        }
    }

    private static boolean isBool(String v) {
        return v.equalsIgnoreCase("true") || v.equalsIgnoreCase("false") || v.equals("1") || v.equals("0");
    }

    private static boolean bool(String v) {
        return v.equalsIgnoreCase("true") || v.equals("1");
    }

    public String get(String key) {
        return values.get(key);
    }

    /** Lines "key = value  # origin" for --print-config (the auth token is never printed). */
    public List<String> describe() {
        List<String> out = new ArrayList<>();
        for (Setting s : SETTINGS) {
            String v = values.get(s.key());
            if (s.key().equals("auth_token") && !v.isEmpty()) {
                v = "<set, " + v.length() + " characters>";
            }
            out.add(String.format("%-26s = %-32s # %s", s.key(), '"' + v + '"', origins.get(s.key())));
        }
        return out;
    }

    public HostPort listen() {
        return HostPort.parse(values.get("listen"));
    }

    public String socketPath() {
        return values.get("socket_path");
    }

    public int workers() {
        String v = values.get("workers");
        return v.isEmpty() ? Runtime.getRuntime().availableProcessors() : Integer.parseInt(v);
    }

    public String python() {
        return values.get("python");
    }

    public String runtimeDir() {
        return values.get("runtime_dir");
    }

    public int maxMessageBytes() {
        return Integer.parseInt(values.get("max_message_mb")) * 1024 * 1024;
    }

    /** The initial HTTP/2 flow-control window in bytes (at most 2^31 - 1, HTTP/2's limit). */
    public int flowWindowBytes() {
        return (int) Math.min(Integer.MAX_VALUE, Long.parseLong(values.get("flow_window_mb")) * 1024 * 1024);
    }

    public int maxDataPoints() {
        return Integer.parseInt(values.get("max_data_points"));
    }

    /** AnalyzeStream: most values gathered for a whole-series algorithm. */
    public long streamMaxPoints() {
        String v = values.get("stream_max_points");
        return v.isEmpty() ? maxDataPoints() : Long.parseLong(v.trim());
    }

    public long streamExactMaxPoints() {
        return Long.parseLong(values.get("stream_exact_max_points").trim());
    }

    public long streamExactTotalBytes() {
        return Long.parseLong(values.get("stream_exact_total_mb").trim()) * 1024L * 1024L;
    }

    public int streamSketchK() {
        return Integer.parseInt(values.get("stream_sketch_k").trim());
    }

    public int maxBatchSize() {
        return Integer.parseInt(values.get("max_batch_size"));
    }

    public int batchConcurrency() {
        return Integer.parseInt(values.get("batch_concurrency"));
    }

    public int defaultTimeoutMs() {
        return Integer.parseInt(values.get("default_timeout_ms"));
    }

    public int maxConcurrent() {
        return Integer.parseInt(values.get("max_concurrent"));
    }

    public int queueWaitMs() {
        return Integer.parseInt(values.get("queue_wait_ms"));
    }

    public int rateLimit() {
        return Integer.parseInt(values.get("rate_limit"));
    }

    public int workerMaxRequests() {
        return Integer.parseInt(values.get("worker_max_requests"));
    }

    public long workerMaxRssBytes() {
        return Long.parseLong(values.get("worker_max_rss_mb")) * 1024L * 1024L;
    }

    public int workerStartupTimeoutS() {
        return Integer.parseInt(values.get("worker_startup_timeout_s"));
    }

    public int shutdownGraceS() {
        return Integer.parseInt(values.get("shutdown_grace_s"));
    }

    public String logLevel() {
        return values.get("log_level").toLowerCase(Locale.ROOT);
    }

    public boolean logTimestamps() {
        return bool(values.get("log_timestamps"));
    }

    public String authToken() {
        return values.get("auth_token");
    }

    public String tlsCert() {
        return values.get("tls_cert");
    }

    public String tlsKey() {
        return values.get("tls_key");
    }

    public long shmThresholdBytes() {
        return Long.parseLong(values.get("shm_threshold_bytes").trim());
    }

    public WorkerStartMode workerStart() {
        return WorkerStartMode.parse(values.get("worker_start"));
    }

    public boolean testMode() {
        return bool(values.get("test_mode"));
    }

    /** A host:port pair. */
    public record HostPort(String host, int port) {
        public static HostPort parse(String s) {
            if (s == null) {
                return null;
            }
            int i = s.lastIndexOf(':');
            if (i <= 0 || i == s.length() - 1) {
                return null;
            }
            String host = s.substring(0, i);
            if (host.startsWith("[") && host.endsWith("]")) {
                host = host.substring(1, host.length() - 1);
            }
            try {
                int port = Integer.parseInt(s.substring(i + 1));
                return port >= 0 && port <= 65535 ? new HostPort(host, port) : null;
            } catch (NumberFormatException e) {
                return null;
            }
        }

        @Override
        public String toString() {
            return (host.contains(":") ? "[" + host + "]" : host) + ":" + port;
        }
    }

    /** A configuration problem the operator must fix; the message says which setting and why. */
    public static final class ConfigException extends Exception {
        public ConfigException(String message) {
            super(message);
        }
    }
}
