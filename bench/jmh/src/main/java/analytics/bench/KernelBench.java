package analytics.bench;

import analytics.engine.stats.NativeKernel;
import analytics.engine.stats.NativeStatistics;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Warmup;

/**
 * The engine's native kernels at 10^6 points, exactly as the dispatcher calls them:
 * {@code NativeStatistics.KERNELS.get(name).compute(data, params)}.
 *
 * <p>Data: the little-endian float64 file named by {@code -Dbench.data=PATH} (scripts/bench.sh writes the same
 * file that the numpy timeit side reads, so both sides see identical values), else 10^6 standard normal values
 * from {@code new Random(42)}. The kernel gets the array itself; a kernel that sorts must copy (as it must in
 * the engine, where the array is the request's), so the copy is part of what is measured.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"-Xms512m", "-Xmx512m"})
public class KernelBench {

    @Param({"mean", "std", "percentile", "median", "summary"})
    public String kernel;

    @Param({"1000000"})
    public int n;

    private double[] data;
    private NativeKernel k;
    private Map<String, String> params;

    @Setup(Level.Trial)
    public void setup() throws IOException {
        String file = System.getProperty("bench.data", "");
        if (!file.isEmpty()) {
            byte[] raw = Files.readAllBytes(Path.of(file));
            ByteBuffer bb = ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN);
            int count = Math.min(n, raw.length / 8);
            data = new double[count];
            bb.asDoubleBuffer().get(data);
        } else {
            Random r = new Random(42);
            data = new double[n];
            for (int i = 0; i < n; i++) {
                data[i] = r.nextGaussian();
            }
        }
        k = NativeStatistics.KERNELS.get(kernel);
        if (k == null) {
            throw new IllegalStateException("no native kernel named " + kernel);
        }
        params = kernel.equals("percentile") ? Map.of("percentile", "90") : Map.of();
    }

    @Benchmark
    public Object compute() throws Exception {
        return k.compute(data, params);
    }
}
