package analytics.engine.workers.launch;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/** Starts each worker as a fresh interpreter: {@code python -m analytics_worker --socket … --worker-id N}. */
public final class SpawnLauncher implements WorkerLauncher {

    private static final Logger log = LoggerFactory.getLogger(SpawnLauncher.class);

    private final List<String> baseCommand;
    private final Path workingDir;
    private final Map<String, String> env;

    /**
     * @param python     the workers' interpreter
     * @param socketPath the engine's worker socket
     * @param extraArgs  further worker arguments (e.g. {@code --max-frame N}, {@code --preload})
     * @param workingDir the workers' working directory, or null for the engine's
     * @param env        environment added for every worker
     */
    public SpawnLauncher(Path python, Path socketPath, List<String> extraArgs, Path workingDir, Map<String, String> env) {
        List<String> cmd = new ArrayList<>(List.of(python.toString(), "-m", "analytics_worker",
                "--socket", socketPath.toString()));
        cmd.addAll(extraArgs);
        this.baseCommand = List.copyOf(cmd);
        this.workingDir = workingDir;
        this.env = Map.copyOf(env);
    }

    @Override
    public LaunchedProcess launch(LaunchSpec spec) throws IOException {
        List<String> cmd = new ArrayList<>(baseCommand);
        cmd.add("--worker-id");
        cmd.add(Integer.toString(spec.workerId()));
        ProcessBuilder pb = new ProcessBuilder(cmd);
        if (workingDir != null) {
            pb.directory(workingDir.toFile());
        }
        WorkerEnvironment.prepare(pb.environment(), env);
        pb.environment().putAll(spec.env());
        pb.environment().put("ANALYTICS_WORKER_TOKEN", spec.token());
        pb.environment().put("PYTHONUNBUFFERED", "1");
        Process p;
        try {
            p = pb.start();
        } catch (IOException e) {
            throw new IOException("cannot start " + baseCommand.get(0) + ": " + e.getMessage(), e);
        }
        log.info("worker[{}] spawned pid {} ({})", spec.workerId(), p.pid(), String.join(" ", cmd.subList(1, cmd.size())));
        forward(spec, p.getInputStream(), "stdout");
        forward(spec, p.getErrorStream(), "stderr");
        return new Spawned(p);
    }

    @Override
    public String describe() {
        return "spawn";
    }

    @Override
    public void close() {
        // nothing of its own: the spawned workers are the supervisor's
    }

    private static void forward(LaunchSpec spec, InputStream in, String stream) {
        Thread t = new Thread(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8))) {
                String line;
                while ((line = r.readLine()) != null) {
                    spec.output().line(stream, line);
                }
            } catch (IOException ignored) {
                // process gone
            }
        }, "worker-" + spec.workerId() + "-" + stream);
        t.setDaemon(true);
        t.start();
    }

    /** A child of the engine: {@link Process} knows its exit status. */
    private static final class Spawned implements LaunchedProcess {
        private final Process process;
        private final CompletableFuture<String> exited;

        Spawned(Process process) {
            this.process = process;
            this.exited = process.onExit().thenApply(Spawned::describeExit);
        }

        private static String describeExit(Process p) {
            int code = p.exitValue();
            if (code > 128 && code < 160) {
                return "was killed by signal " + (code - 128);
            }
            return "exited with status " + code;
        }

        @Override
        public long pid() {
            return process.pid();
        }

        @Override
        public CompletableFuture<String> exited() {
            return exited;
        }

        @Override
        public boolean isAlive() {
            return process.isAlive();
        }

        @Override
        public void terminate() {
            process.destroy();
        }

        @Override
        public void kill() {
            process.descendants().forEach(ProcessHandle::destroyForcibly);
            process.destroyForcibly();
        }
    }
}
