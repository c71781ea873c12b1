package analytics.engine.workers.launch;

import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
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
 * template.py) that imported the libraries and the algorithm registry once. This class is the templates'
 * lifecycle: start (on one long-lived thread), health, replacement, rolling reload and the fallback to spawning;
 * the protocol with one running template is {@link TemplateProcess}, a forked worker's handle
 * {@link ForkedWorker}, and the routing of forked workers' output and exits {@link ForkedWorkers}.
 *
 * <p>The template's stderr pipe, which every forked worker inherits, outlives the template while its workers
 * hold their copies, so their output keeps flowing after a template death.
 *
 * <p>Supervision: a template that dies is replaced at once (running workers keep serving; their exits are then
 * watched through their pids). If templates cannot start (import error, crash on start) the launcher falls back to
 * {@link SpawnLauncher} — logged, and visible in {@link #status()} (/health) — until the next {@link #reload()}.
 */
public final class ForkServerLauncher implements WorkerLauncher {

    private static final Logger log = LoggerFactory.getLogger(ForkServerLauncher.class);
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
    /** Every template's forked workers (a retired template's keep running while they are replaced). */
    private final ForkedWorkers forked = new ForkedWorkers();
    private final AtomicLong templateStarts = new AtomicLong();
    private final Object lock = new Object();
    private volatile TemplateProcess current;
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
            TemplateProcess t = ensureTemplate();
            if (t == null) {
                return fallback.launch(spec);
            }
            try {
                return t.fork(spec);
            } catch (TemplateProcess.TemplateGone e) {
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
        TemplateProcess t = current;
        return t == null ? "fork-server (no template yet)" : "fork-server (template pid " + t.process.pid() + ")";
    }

    @Override
    public Map<String, Object> status() {
        Map<String, Object> m = new LinkedHashMap<>();
        String why = fallbackReason;
        TemplateProcess t = current;
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
        TemplateProcess fresh;
        try {
            fresh = templateThread.submit(this::startTemplate).get();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return;
        } catch (ExecutionException e) {
            String why = e.getCause().getMessage();
            synchronized (lock) {
                TemplateProcess old = current;
                if (fallbackReason == null && old != null && old.alive()) {
                    log.error("rolling reload: the new fork-server template cannot start ({}); workers are replaced "
                            + "from the running template pid {} (the code it loaded)", why, old.process.pid());
                } else {
                    fallBack(why);
                }
            }
            return;
        }
        TemplateProcess old;
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
        TemplateProcess t;
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
        TemplateProcess t = current;
        return t != null && t.process.isAlive() ? t.process.pid() : -1;
    }

    /** True once templates could not start and workers are spawned instead. */
    public boolean isFallback() {
        return fallbackReason != null;
    }

    // ------------------------------------------------------------------ templates

    /** The running template, starting one if needed; null when falling back to spawning. */
    private TemplateProcess ensureTemplate() throws IOException {
        synchronized (lock) {
            if (fallbackReason != null) {
                return null;
            }
            TemplateProcess t = current;
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
    private TemplateProcess startTemplate() throws IOException {
        ProcessBuilder pb = new ProcessBuilder(command);
        if (workingDir != null) {
            pb.directory(workingDir.toFile());
        }
        WorkerEnvironment.prepare(pb.environment(), env);
        Process p;
        try {
            p = pb.start();
        } catch (IOException e) {
            throw new IOException("cannot start " + command.get(0) + ": " + e.getMessage(), e);
        }
        templateStarts.incrementAndGet();
        TemplateProcess t = new TemplateProcess(p, forked, readyTimeout, this::templateEnded);
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

    /** The template ended (stdout EOF; its pending forks failed, its orphans watched): replace it if it was current. */
    private void templateEnded(TemplateProcess t, String how) {
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
}
