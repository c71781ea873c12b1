package analytics.engine.workers.launch;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.BiConsumer;
import java.util.function.Consumer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One running fork-server template and the protocol with it: fork requests on its stdin (one JSON object per
 * line), answers on its stdout (ready / forked / refused), and its stderr pipe, shared with every worker it
 * forked, carrying their tagged lines ({@code \u001fW<pid> <stream>\u001f<line>}) and, after reaping one, its exit
 * report ({@code \u001fX<pid>\u001f<status>}) — handed to {@link ForkedWorkers}. When its control channel closes it
 * tells its owner (the launcher decides whether to replace it).
 */
final class TemplateProcess {

    // logged under the launcher's name, as before this class was split out of it (log filters keep working)
    private static final Logger log = LoggerFactory.getLogger(ForkServerLauncher.class);
    private static final ObjectMapper JSON = new ObjectMapper();

    final Process process;
    final CompletableFuture<Void> ready = new CompletableFuture<>();
    volatile long importMs = -1;
    volatile long readyNanos;
    volatile boolean retired;
    private final OutputStream stdin;
    private final Map<String, CompletableFuture<JsonNode>> pendingForks = new ConcurrentHashMap<>();
    private final ForkedWorkers workers;
    private final Duration answerTimeout;
    private final BiConsumer<TemplateProcess, String> onEnded;
    private volatile String lastOwnLine;

    /**
     * @param answerTimeout how long a fork request may wait for its answer
     * @param onEnded       called once with this template and how it ended, after its pending forks have failed
     */
    TemplateProcess(Process process, ForkedWorkers workers, Duration answerTimeout,
            BiConsumer<TemplateProcess, String> onEnded) {
        this.process = process;
        this.stdin = process.getOutputStream();
        this.workers = workers;
        this.answerTimeout = answerTimeout;
        this.onEnded = onEnded;
    }

    boolean alive() {
        return process.isAlive() && !retired;
    }

    String lastLineSuffix() {
        String l = lastOwnLine;
        return l == null ? "" : " (last stderr line: " + l + ")";
    }

    void startReaders() {
        daemon("fork-server-" + process.pid() + "-control", this::readControl);
        daemon("fork-server-" + process.pid() + "-output", this::readOutput);
    }

    /** Hands every line of {@code in} to {@code each} until its writers are gone (EOF or a read error). */
    private static void eachLine(InputStream in, Consumer<String> each) {
        try (BufferedReader r = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8))) {
            String line;
            while ((line = r.readLine()) != null) {
                each.accept(line);
            }
        } catch (IOException ignored) {
            // the writers are gone: the callers go on with what that means
        }
    }

    private void readControl() {
        eachLine(process.getInputStream(), this::onEvent); // returns when the template is gone
        String how;
        try {
            how = describeExit(process.onExit().get(2, TimeUnit.SECONDS).exitValue());
        } catch (Exception e) {
            how = "closed its control channel";
        }
        if (!ready.isDone()) {
            ready.completeExceptionally(new IOException("template pid " + process.pid() + " " + how
                    + " before it was ready" + lastLineSuffix()));
        }
        String ended = how;
        pendingForks.values().forEach(f -> f.completeExceptionally(new TemplateGone("template pid " + process.pid() + " " + ended)));
        pendingForks.clear();
        workers.orphaned(this);
        onEnded.accept(this, how);
    }

    private void onEvent(String line) {
        JsonNode ev;
        try {
            ev = JSON.readTree(line);
        } catch (IOException e) {
            log.warn("fork-server template pid {}: unreadable control line: {}", process.pid(), line);
            return;
        }
        switch (ev.path("event").asText()) {
            case "ready" -> {
                importMs = ev.path("import_ms").asLong(-1);
                readyNanos = System.nanoTime();
                ready.complete(null);
            }
            case "forked", "refused" -> {
                CompletableFuture<JsonNode> f = pendingForks.remove(ev.path("token").asText());
                if (f != null) {
                    f.complete(ev);
                }
            }
            default -> log.warn("fork-server template pid {}: unknown event {}", process.pid(), line);
        }
    }

    private void readOutput() {
        eachLine(process.getErrorStream(), this::onOutput); // until the template and every forked worker are gone
    }

    private void onOutput(String line) {
        if (line.startsWith("\u001fW")) {
            int sp = line.indexOf(' ');
            int end = line.indexOf('\u001f', 2);
            if (sp > 2 && end > sp) {
                try {
                    long pid = Long.parseLong(line.substring(2, sp));
                    workers.deliver(pid, line.substring(sp + 1, end), line.substring(end + 1));
                    return;
                } catch (NumberFormatException ignored) {
                    // fall through: log as is
                }
            }
        } else if (line.startsWith("\u001fX")) {
            int end = line.indexOf('\u001f', 2);
            if (end > 2) {
                try {
                    long pid = Long.parseLong(line.substring(2, end));
                    workers.exited(pid, line.substring(end + 1));
                    return;
                } catch (NumberFormatException ignored) {
                    // fall through
                }
            }
        }
        lastOwnLine = line.length() > 300 ? line.substring(0, 300) + "…" : line;
        log.info("fork-server template pid {}: {}", process.pid(), line);
    }

    ForkedWorker fork(LaunchSpec spec) throws IOException {
        CompletableFuture<JsonNode> answer = new CompletableFuture<>();
        pendingForks.put(spec.token(), answer);
        Map<String, Object> req = new LinkedHashMap<>();
        req.put("op", "fork");
        req.put("worker_id", spec.workerId());
        req.put("token", spec.token());
        req.put("env", spec.env());
        try {
            byte[] bytes = (JSON.writeValueAsString(req) + "\n").getBytes(StandardCharsets.UTF_8);
            synchronized (stdin) {
                stdin.write(bytes);
                stdin.flush();
            }
        } catch (IOException e) {
            pendingForks.remove(spec.token());
            throw new TemplateGone("cannot write to template pid " + process.pid() + ": " + e.getMessage());
        }
        JsonNode ev;
        try {
            ev = answer.get(answerTimeout.toMillis(), TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted while forking worker[" + spec.workerId() + "]");
        } catch (ExecutionException e) {
            if (e.getCause() instanceof TemplateGone g) {
                throw g;
            }
            throw new IOException(e.getCause().getMessage());
        } catch (TimeoutException e) {
            pendingForks.remove(spec.token());
            process.destroyForcibly(); // a template that does not answer is of no use: it is replaced
            throw new TemplateGone("template pid " + process.pid() + " did not answer a fork request within "
                    + answerTimeout.toMillis() + " ms");
        }
        if ("refused".equals(ev.path("event").asText())) {
            throw new IOException("the fork-server template refused to fork: " + ev.path("error").asText());
        }
        ForkedWorker f = new ForkedWorker(ev.path("pid").asLong(), this);
        workers.register(f, spec.output());
        log.info("worker[{}] forked pid {} from template pid {}", spec.workerId(), f.pid, process.pid());
        return f;
    }

    /** No more forks: EOF on its stdin; it exits once its workers have ended. */
    void retire() {
        retired = true;
        try {
            stdin.close();
        } catch (IOException ignored) {
            // already gone
        }
    }

    private static String describeExit(int code) {
        if (code > 128 && code < 160) {
            return "was killed by signal " + (code - 128);
        }
        return "exited with status " + code;
    }

    private static void daemon(String name, Runnable r) {
        Thread t = new Thread(r, name);
        t.setDaemon(true);
        t.start();
    }

    /** The template died while we were asking it to fork. */
    static final class TemplateGone extends IOException {
        TemplateGone(String message) {
            super(message);
        }
    }
}
