package analytics.engine.stats;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import org.junit.jupiter.api.Test;

/** The kernels' per-thread working memory is dropped on request (the idle trim) and rebuilt on next use. */
class ScratchTest {

    private static Object summary(double[] d) throws Exception {
        return NativeStatistics.KERNELS.get("summary").compute(d, Map.of());
    }

    @Test
    void releaseDropsEveryThreadsArraysAndTheKernelsStillAnswerTheSame() throws Exception {
        SplittableRandom r = new SplittableRandom(29);
        double[] big = new double[BucketSelection.MIN_N * 3];
        for (int i = 0; i < big.length; i++) {
            big[i] = r.nextGaussian() * 1e3;
        }
        double[] small = java.util.Arrays.copyOf(big, 500); // a working copy instead of buckets
        Object bigBefore = summary(big);
        Object smallBefore = NativeStatistics.KERNELS.get("median").compute(small, Map.of());
        ExecutorService other = Executors.newSingleThreadExecutor();
        try {
            other.submit(() -> summary(big)).get();
            assertTrue(Scratch.holding() >= 2, "this thread and the other hold working memory");

            NativeStatistics.releaseWorkingMemory();
            assertEquals(0, Scratch.holding(), "no thread keeps its arrays after a release");

            assertEquals(bigBefore, summary(big));
            assertEquals(smallBefore, NativeStatistics.KERNELS.get("median").compute(small, Map.of()));
            assertEquals(bigBefore, other.submit(() -> summary(big)).get());
            assertTrue(Scratch.holding() >= 2, "both threads built new arrays on their next kernel");
        } finally {
            other.shutdownNow();
        }
    }
}
