package analytics.engine.workers;

import analytics.engine.workers.launch.ForkServerLauncher;
import analytics.engine.workers.launch.SpawnLauncher;
import analytics.engine.workers.launch.WorkerLauncher;
import analytics.engine.workers.transport.DataFile;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * What the workers need on disk and how they are started: the private runtime directory (mode 0700) with the
 * worker socket and the data files of large requests, and the launcher chosen by the start mode. Made at the
 * pool's start, cleaned at its close.
 */
final class WorkerRuntime {

    private static final Logger log = LoggerFactory.getLogger(WorkerRuntime.class);

    private final Path dir;
    /** A temporary directory the pool created (removed at close), not the configured one. */
    private final boolean owned;

    private WorkerRuntime(Path dir, boolean owned) {
        this.dir = dir;
        this.owned = owned;
    }

    /** Creates (or takes over) the runtime directory: removes a stale socket and stale data files. */
    static WorkerRuntime prepare(WorkerPoolConfig config) throws IOException {
        if (config.python().getNameCount() > 1 && !Files.isExecutable(config.python())) { // a bare name is looked up in PATH
            log.error("the configured Python interpreter {} does not exist or is not executable; workers will fail to start",
                    config.python());
        }
        var perms = PosixFilePermissions.fromString("rwx------");
        WorkerRuntime rt;
        if (config.runtimeDir() == null) {
            rt = new WorkerRuntime(Files.createTempDirectory("analytics-engine-", PosixFilePermissions.asFileAttribute(perms)), true);
        } else {
            Path dir = config.runtimeDir().toAbsolutePath();
            Files.createDirectories(dir, PosixFilePermissions.asFileAttribute(perms));
            Files.setPosixFilePermissions(dir, perms);
            rt = new WorkerRuntime(dir, false);
        }
        Path sock = rt.socket();
        if (sock.toString().getBytes(StandardCharsets.UTF_8).length > 100) {
            throw new IllegalStateException("runtime directory path too long for a Unix socket: " + sock);
        }
        Files.deleteIfExists(sock);
        int stale = DataFile.sweep(rt.dir);
        if (stale > 0) {
            log.info("removed {} stale data file(s) from {}", stale, rt.dir);
        }
        return rt;
    }

    Path dir() {
        return dir;
    }

    Path socket() {
        return dir.resolve("workers.sock");
    }

    /** Issue 11: how workers start (fork-server by default, spawn as the fallback/option). */
    WorkerLauncher newLauncher(WorkerPoolConfig config) throws IOException, InterruptedException {
        Path sock = socket();
        List<String> workerArgs = new ArrayList<>(List.of("--max-frame", Integer.toString(config.maxFrameBytes())));
        if (config.testMode()) {
            workerArgs.add("--enable-test-algorithms");
        }
        return switch (config.startMode()) {
            case FORK_SERVER -> new ForkServerLauncher(config.python(), sock, workerArgs, config.workingDir(),
                    config.extraEnv(), config.timeouts().startup());
            case SPAWN -> new SpawnLauncher(config.python(), sock, workerArgs, config.workingDir(), config.extraEnv());
            case SPAWN_PRELOAD -> {
                List<String> preload = new ArrayList<>(workerArgs);
                preload.add("--preload");
                yield new SpawnLauncher(config.python(), sock, preload, config.workingDir(), config.extraEnv());
            }
        };
    }

    /** Removes the socket and the data files, and the directory itself when the pool created it. */
    void cleanUp() {
        try {
            Files.deleteIfExists(socket());
            DataFile.sweep(dir);
            if (owned) {
                Files.deleteIfExists(dir);
            }
        } catch (IOException e) {
            log.warn("could not clean up {}: {}", dir, e.getMessage());
        }
    }
}
