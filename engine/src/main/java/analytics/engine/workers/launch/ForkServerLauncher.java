package analytics.engine.workers.launch;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Forks warm workers from a template process ({@code python -m analytics_worker --template}, py-worker
 * template.py) that imported the libraries and the algorithm registry once.
 *
 * <p>Control channel: the template's stdin (fork requests, one JSON object per line) and stdout (ready /
 * forked / refused). Output path: the template's stderr pipe, which every forked worker inherits and writes
 * its lines to, tagged with its pid ({@code \u001fW<pid> <stream>\u001f<line>}); the template writes a
 * worker's exit report ({@code \u001fX<pid>\u001f<status>}) into the same pipe after reaping it, so the worker's
 * last lines are always read before its exit is processed (crash reports carry them). The pipe outlives the
 * template while its workers hold their copies, so their output keeps flowing after a template death.
 *
 * <p>Supervision: a template that dies is replaced at once (running workers keep serving; their exits are then
 * watched through their pids). If templates cannot start (import error, crash on start) the launcher falls back to
 * {@link SpawnLauncher} — logged, and visible in {@link #status()} (/health) — until the next {@link #reload()}.
 */
public final class ForkServerLauncher implements WorkerLauncher {

    private static final Logger log = LoggerFactory.getLogger(ForkServerLauncher.class);
    private static final ObjectMapper JSON = new ObjectMapper();
    /** Templates that die this soon after being ready count as failing to start (crash loop → fallback). */
    private static final long EARLY_DEATH_NANOS = TimeUnit.SECONDS.toNanos(10);
    private static final int MAX_EARLY_DEATHS = 3;

    private final List<String> command;
    private final Path workingDir;
    private final Map<String, String> env;
    private final Duration readyTimeout;
    private final SpawnLauncher fallback;
    /**
     * The template is this JVM's child and asks for PR_SET_PDEATHSIG, which Linux ties to the thread that
     * started it: every template starts on this one long-lived thread.
     */
    private final ExecutorService templateThread = Executors.newSingleThreadExecutor(r -> {
        Thread t = new Thread(r, "fork-server-template");
        t.setDaemon(true);
        return t;
    });
    private final Map<Long, Forked> children = new ConcurrentHashMap<>();
    /** Lines of a pid whose "forked" answer has not been processed yet (the child may write first). */
    private final Map<Long, List<String[]>> early = new ConcurrentHashMap<>();
    /** Exit reports of a pid whose "forked" answer has not been processed yet (guarded by {@link #early}). */
    private final Map<Long, String> earlyExits = new ConcurrentHashMap<>();
    private final AtomicLong templateStarts = new AtomicLong();
    private final Object lock = new Object();
    private volatile Template current;
    private volatile String fallbackReason;
    private volatile boolean closed;
    private int earlyDeaths;

    /**
     * @param python       the workers' interpreter
     * @param socketPath   the engine's worker socket
     * @param extraArgs    further worker arguments ({@code --max-frame N}, {@code --enable-test-algorithms})
     * @param workingDir   working directory of the template (and so of its workers), or null for the engine's
     * @param env          environment of the template (and so of its workers)
     * @param readyTimeout how long a template may take to import everything and say ready
     */
    public ForkServerLauncher(Path python, Path socketPath, List<String> extraArgs, Path workingDir,
            Map<String, String> env, Duration readyTimeout) {
        List<String> cmd = new ArrayList<>(List.of(python.toString(), "-m", "analytics_worker", "--template",
                "--socket", socketPath.toString(), "--engine-pid", Long.toString(ProcessHandle.current().pid())));
        cmd.addAll(extraArgs);
        this.command = List.copyOf(cmd);
        this.workingDir = workingDir;
        this.env = Map.copyOf(env);
        this.readyTimeout = readyTimeout;
        this.fallback = new SpawnLauncher(python, socketPath, extraArgs, workingDir, env);
    }

    // ------------------------------------------------------------------ WorkerLauncher

    @Override
    public LaunchedProcess launch(LaunchSpec spec) throws IOException {
        if (closed) {
            throw new IOException("the fork server is closed");
        }
        for (int attempt = 0; attempt < 2; attempt++) {
            Template t = ensureTemplate();
            if (t == null) {
                return fallback.launch(spec);
            }
            try {
                return t.fork(spec);
            } catch (TemplateGone e) {
                log.warn("worker[{}]: {}; retrying with a new template", spec.workerId(), e.getMessage());
            }
        }
        throw new IOException("worker[" + spec.workerId() + "]: the fork-server template died twice while forking");
    }

    @Override
    public String describe() {
        String why = fallbackReason;
        if (why != null) {
            return "spawn (fork-server fallback: " + why + ")";
        }
        Template t = current;
        return t == null ? "fork-server (no template yet)" : "fork-server (template pid " + t.process.pid() + ")";
    }

    @Override
    public Map<String, Object> status() {
        Map<String, Object> m = new LinkedHashMap<>();
        String why = fallbackReason;
        Template t = current;
        m.put("mode", why != null ? "spawn" : "fork-server");
        m.put("configured", "fork-server");
        if (why != null) {
            m.put("fallback_reason", why);
        }
        m.put("template_pid", t != null && t.process.isAlive() ? t.process.pid() : -1);
        m.put("template_starts", templateStarts.get());
        if (t != null && t.importMs >= 0) {
            m.put("template_import_ms", t.importMs);
        }
        return m;
    }

    /**
     * Rolling reload, first step: start a template with the code now on disk and make it current; the old
     * template forks no more and exits once its workers (being replaced one by one) have ended. Clears a spawn
     * fallback (the operator may have fixed the cause).
     */
    @Override
    public void reload() {
        if (closed) {
            return;
        }
        Template fresh;
        try {
            fresh = templateThread.submit(this::startTemplate).get();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return;
        } catch (ExecutionException e) {
            String why = e.getCause().getMessage();
            synchronized (lock) {
                Template old = current;
                if (fallbackReason == null && old != null && old.alive()) {
                    log.error("rolling reload: the new fork-server template cannot start ({}); workers are replaced "
                            + "from the running template pid {} (the code it loaded)", why, old.process.pid());
                } else {
                    fallBack(why);
                }
            }
            return;
        }
        Template old;
        synchronized (lock) {
            old = current;
            current = fresh;
            fallbackReason = null;
            earlyDeaths = 0;
        }
        if (old != null) {
            old.retire(); // forks no more; exits once the workers it forked (being replaced now) have ended
        }
        log.info("rolling reload: new fork-server template pid {} ready", fresh.process.pid());
    }

    @Override
    public void close() {
        closed = true;
        Template t;
        synchronized (lock) {
            t = current;
            current = null;
        }
        if (t != null) {
            t.retire();
            try {
                t.process.onExit().get(2, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            } catch (ExecutionException | TimeoutException e) {
                // its workers are still ending: they are the supervisor's; the template goes now
            }
            t.process.destroyForcibly();
        }
        templateThread.shutdownNow();
    }

    /** Pid of the running template, or -1 (tests, /health). */
    public long templatePid() {
        Template t = current;
        return t != null && t.process.isAlive() ? t.process.pid() : -1;
    }

    /** True once templates could not start and workers are spawned instead. */
    public boolean isFallback() {
        return fallbackReason != null;
    }

    // ------------------------------------------------------------------ templates

    /** The running template, starting one if needed; null when falling back to spawning. */
    private Template ensureTemplate() throws IOException {
        synchronized (lock) {
            if (fallbackReason != null) {
                return null;
            }
            Template t = current;
            if (t != null && t.alive()) {
                return t;
            }
            if (closed) {
                throw new IOException("the fork server is closed");
            }
            String why;
            try {
                t = templateThread.submit(this::startTemplate).get();
                current = t;
                return t;
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IOException("interrupted while starting the fork-server template", e);
            } catch (ExecutionException e) {
                why = e.getCause().getMessage();
            }
            fallBack(why);
            return null;
        }
    }

    private void fallBack(String why) {
        fallbackReason = why;
        log.error("fork-server template cannot start: {}. FALLING BACK to spawning each worker as a fresh interpreter "
                + "(slow first requests, no shared memory); fix the cause and reload (SIGHUP) to retry", why);
    }

    /** Runs on {@link #templateThread}. */
    private Template startTemplate() throws IOException {
        ProcessBuilder pb = new ProcessBuilder(command);
        if (workingDir != null) {
            pb.directory(workingDir.toFile());
        }
        pb.environment().putAll(env);
        Process p;
        try {
            p = pb.start();
        } catch (IOException e) {
            throw new IOException("cannot start " + command.get(0) + ": " + e.getMessage(), e);
        }
        templateStarts.incrementAndGet();
        Template t = new Template(p);
        t.startReaders();
        try {
            t.ready.get(readyTimeout.toMillis(), TimeUnit.MILLISECONDS);
        } catch (TimeoutException e) {
            p.destroyForcibly();
            throw new IOException("template pid " + p.pid() + " not ready within " + readyTimeout.toMillis() + " ms"
                    + t.lastLineSuffix());
        } catch (ExecutionException e) {
            p.destroyForcibly();
            throw new IOException(e.getCause().getMessage());
        } catch (InterruptedException e) {
            p.destroyForcibly();
            Thread.currentThread().interrupt();
            throw new IOException("interrupted while the template started");
        }
        log.info("fork-server template pid {} ready (imports took {} ms)", p.pid(), t.importMs);
        return t;
    }

    /** The template ended (stdout EOF): fail its pending forks, watch its orphans, replace it if it was current. */
    private void templateEnded(Template t, String how) {
        t.pendingForks.values().forEach(f -> f.completeExceptionally(new TemplateGone("template pid " + t.process.pid() + " " + how)));
        t.pendingForks.clear();
        for (Forked f : children.values()) {
            if (f.template == t && !f.exited.isDone()) {
                // Reparented to init: its status is no longer ours to learn; its end still is.
                ProcessHandle.of(f.pid).ifPresentOrElse(
                        ph -> ph.onExit().thenRun(() -> f.reportExit("ended (status unknown: its fork-server template had exited)")),
                        () -> f.reportExit("ended (status unknown: its fork-server template had exited)"));
            }
        }
        boolean replace;
        synchronized (lock) {
            replace = current == t && !closed && !t.retired;
            if (replace) {
                current = null;
                if (System.nanoTime() - t.readyNanos < EARLY_DEATH_NANOS && ++earlyDeaths >= MAX_EARLY_DEATHS) {
                    fallBack("the template died " + earlyDeaths + " times shortly after starting; last: " + how
                            + t.lastLineSuffix());
                    return;
                }
            }
        }
        if (replace) {
            log.warn("fork-server template pid {} {}{}; running workers keep serving; starting a new template",
                    t.process.pid(), how, t.lastLineSuffix());
            CompletableFuture.runAsync(() -> {
                try {
                    ensureTemplate();
                } catch (IOException e) {
                    log.error("fork-server: {}", e.getMessage());
                }
            });
        }
    }

    private final class Template {
        final Process process;
        final OutputStream stdin;
        final CompletableFuture<Void> ready = new CompletableFuture<>();
        final Map<String, CompletableFuture<JsonNode>> pendingForks = new ConcurrentHashMap<>();
        volatile long importMs = -1;
        volatile long readyNanos;
        volatile boolean retired;
        volatile String lastOwnLine;

        Template(Process process) {
            this.process = process;
            this.stdin = process.getOutputStream();
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

        private void readControl() {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8))) {
                String line;
                while ((line = r.readLine()) != null) {
                    onEvent(line);
                }
            } catch (IOException ignored) {
                // template gone
            }
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
            templateEnded(this, how);
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
            try (BufferedReader r = new BufferedReader(new InputStreamReader(process.getErrorStream(), StandardCharsets.UTF_8))) {
                String line;
                while ((line = r.readLine()) != null) {
                    onOutput(line);
                }
            } catch (IOException ignored) {
                // every writer is gone
            }
        }

        private void onOutput(String line) {
            if (line.startsWith("\u001fW")) {
                int sp = line.indexOf(' ');
                int end = line.indexOf('\u001f', 2);
                if (sp > 2 && end > sp) {
                    try {
                        long pid = Long.parseLong(line.substring(2, sp));
                        deliver(pid, line.substring(sp + 1, end), line.substring(end + 1));
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
                        String status = line.substring(end + 1);
                        Forked f;
                        synchronized (early) {
                            f = children.get(pid);
                            if (f == null) {
                                earlyExits.put(pid, status);
                            }
                        }
                        if (f != null) {
                            f.reportExit(status);
                        }
                        return;
                    } catch (NumberFormatException ignored) {
                        // fall through
                    }
                }
            }
            lastOwnLine = line.length() > 300 ? line.substring(0, 300) + "…" : line;
            log.info("fork-server template pid {}: {}", process.pid(), line);
        }

        Forked fork(LaunchSpec spec) throws IOException {
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
                ev = answer.get(readyTimeout.toMillis(), TimeUnit.MILLISECONDS);
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
                        + readyTimeout.toMillis() + " ms");
            }
            if ("refused".equals(ev.path("event").asText())) {
                throw new IOException("the fork-server template refused to fork: " + ev.path("error").asText());
            }
            long pid = ev.path("pid").asLong();
            Forked f = new Forked(pid, this);
            f.output = spec.output();
            List<String[]> before;
            String exitedEarly;
            synchronized (early) {
                children.put(pid, f);
                before = early.remove(pid);
                exitedEarly = earlyExits.remove(pid);
            }
            f.exited.whenComplete((d, e) -> children.remove(pid));
            if (before != null) {
                before.forEach(l -> spec.output().line(l[0], l[1]));
            }
            if (exitedEarly != null) {
                f.reportExit(exitedEarly);
            }
            log.info("worker[{}] forked pid {} from template pid {}", spec.workerId(), pid, process.pid());
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
    }

    private void deliver(long pid, String stream, String text) {
        Forked f = children.get(pid);
        LaunchSpec.OutputSink sink = f == null ? null : f.output;
        if (sink == null) {
            synchronized (early) {
                f = children.get(pid);
                sink = f == null ? null : f.output;
                if (sink == null) {
                    List<String[]> buf = early.computeIfAbsent(pid, k -> new ArrayList<>());
                    if (buf.size() < 100) {
                        buf.add(new String[] {stream, text});
                    }
                    return;
                }
            }
        }
        sink.line(stream, text);
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

    /** A worker forked by a template: not our child, so its exit is reported by the template (or watched by pid). */
    private static final class Forked implements LaunchedProcess {
        final long pid;
        final Template template;
        final CompletableFuture<String> exited = new CompletableFuture<>();
        volatile LaunchSpec.OutputSink output;

        /** Looked up once: ProcessHandle.of reads /proc/PID/stat, and isAlive() is asked on every borrow and return. */
        final Optional<ProcessHandle> handle;

        Forked(long pid, Template template) {
            this.pid = pid;
            this.template = template;
            this.handle = ProcessHandle.of(pid);
        }

        void reportExit(String description) {
            exited.complete(description);
        }

        @Override
        public long pid() {
            return pid;
        }

        @Override
        public CompletableFuture<String> exited() {
            return exited;
        }

        @Override
        public boolean isAlive() {
            // the cached handle's isAlive() also checks the start time: a reused pid reads as dead
            return !exited.isDone() && handle.map(ProcessHandle::isAlive).orElse(false);
        }

        @Override
        public void terminate() {
            if (!exited.isDone()) { // never signal a pid that may have been reused
                ProcessHandle.of(pid).ifPresent(ProcessHandle::destroy);
            }
        }

        @Override
        public void kill() {
            if (!exited.isDone()) {
                ProcessHandle.of(pid).ifPresent(ProcessHandle::destroyForcibly);
            }
        }
    }
}
