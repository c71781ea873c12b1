package analytics.engine.workers;

import analytics.engine.api.AnalysisInput;
import analytics.engine.api.PythonBackend.PythonResult;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;

/**
 * Throughput of handing a float64 array to a worker and getting the answer back, msgpack bytes vs the
 * shared-memory (runtime-dir file) hand-off, at 8 MB and 80 MB (not part of the test suite). The request is
 * {@code _test_echo}: the worker sums the array (touches every value) and answers with a tiny JSON, so the figure
 * is engine → worker → engine transport plus one pass over the data. MB/s = array bytes / round trip (median).
 * <pre>
 * mvn -q -B package -DskipTests &amp;&amp; mvn -q -B -o test-compile
 * mvn -q -o -f engine/pom.xml dependency:build-classpath -Dmdep.outputFile=/tmp/cp.txt
 * java -cp engine/target/classes:engine/target/test-classes:$(cat /tmp/cp.txt) \
 *     analytics.engine.workers.SharedMemoryBench PYTHON py-worker [RUNTIME_PARENT ...]
 * </pre>
 * Each RUNTIME_PARENT (default: the temp dir) gets its own private runtime dir, e.g. /dev/shm (tmpfs, like
 * systemd's /run) and /tmp (here ext4).
 */
public final class SharedMemoryBench {

    public static void main(String[] args) throws Exception {
        Path python = Path.of(args[0]);
        Map<String, String> env = Map.of("PYTHONPATH", Path.of(args[1]).toAbsolutePath().toString());
        List<Path> parents = new ArrayList<>();
        for (int i = 2; i < args.length; i++) {
            parents.add(Path.of(args[i]));
        }
        if (parents.isEmpty()) {
            parents.add(Path.of(System.getProperty("java.io.tmpdir")));
        }
        double[] big = new double[10_000_000];
        Random r = new Random(1);
        for (int i = 0; i < big.length; i++) {
            big[i] = r.nextDouble();
        }
        double[] small = Arrays.copyOf(big, 1_000_000);
        System.out.printf("%-10s %-8s %6s %10s %8s %8s %8s %9s%n", "runtime", "path", "size", "median ms", "MB/s",
                "best ms", "MB/s", "write ms");
        for (Path parent : parents) {
            for (long threshold : new long[] {0, 1 << 20}) {
                Path rt = Files.createTempDirectory(parent, "shm-bench-",
                        PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwx------")));
                WorkerPoolConfig cfg = WorkerPoolConfig.defaults(python).withExtraEnv(env).withTestMode(true)
                        .withWorkers(1).withRuntimeDir(rt);
                try (PythonWorkerPool pool = new PythonWorkerPool(cfg, new SimpleMeterRegistry(), threshold)) {
                    pool.start();
                    if (!pool.awaitReady(Duration.ofSeconds(60), true)) {
                        throw new IllegalStateException("worker did not start: " + pool.status());
                    }
                    for (double[] d : new double[][] {small, big}) {
                        int reps = d.length >= 10_000_000 ? 7 : 25;
                        long[] ns = new long[reps];
                        for (int i = -3; i < reps; i++) { // 3 warm-ups
                            long t0 = System.nanoTime();
                            PythonResult res = pool.submit(new AnalysisInput("b" + i, "_test_echo", d, d.length, 1, false,
                                    null, List.of(), Map.of()), 60_000).get();
                            long t = System.nanoTime() - t0;
                            if (!res.resultJson().contains("\"n\":" + d.length + ",")) {
                                throw new IllegalStateException("bad echo: " + res.resultJson());
                            }
                            if (i >= 0) {
                                ns[i] = t;
                            }
                        }
                        Arrays.sort(ns);
                        double med = ns[reps / 2] / 1e6;
                        double best = ns[0] / 1e6;
                        double mb = 8.0 * d.length / 1e6;
                        String write = "";
                        if (threshold > 0) { // engine-side cost alone: write + delete the file
                            long w = Long.MAX_VALUE;
                            for (int i = 0; i < 5; i++) {
                                long t0 = System.nanoTime();
                                analytics.engine.workers.transport.DataFile f =
                                        analytics.engine.workers.transport.DataFile.write(rt, d);
                                w = Math.min(w, System.nanoTime() - t0);
                                f.delete();
                            }
                            write = String.format("%9.1f", w / 1e6);
                        }
                        System.out.printf("%-10s %-8s %4.0fMB %10.1f %8.0f %8.1f %8.0f %s%n", parent,
                                threshold == 0 ? "msgpack" : "shm", mb, med, mb / (med / 1e3), best, mb / (best / 1e3), write);
                    }
                } finally {
                    Files.deleteIfExists(rt);
                }
            }
        }
    }
}
