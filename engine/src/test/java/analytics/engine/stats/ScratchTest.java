package analytics.engine.stats;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertSame;

import java.util.concurrent.CountDownLatch;
import org.junit.jupiter.api.Test;

/**
 * The kernels' per-thread working copy: reused on its thread, and dropped for every thread at once by
 * {@link Scratch#releaseAll()} (the idle trim), including threads that sit idle holding one.
 */
class ScratchTest {

    @Test
    void releaseAllDropsTheBuffersOfIdleThreadsAndEachThreadMakesANewOneNextTime() throws Exception {
        Scratch.releaseAll();
        double[] mine = Scratch.buffer(1000);
        assertSame(mine, Scratch.buffer(500), "reused on the same thread");
        CountDownLatch made = new CountDownLatch(1);
        CountDownLatch done = new CountDownLatch(1);
        Thread idle = new Thread(() -> {
            Scratch.buffer(1000);
            made.countDown();
            try {
                done.await(); // stays alive, holding its buffer, like an idle pool thread
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        });
        idle.start();
        made.await();
        assertEquals(2, Scratch.held());
        Scratch.releaseAll();
        assertEquals(0, Scratch.held(), "a buffer survived releaseAll");
        done.countDown();
        idle.join();
        double[] next = Scratch.buffer(1000);
        assertNotSame(mine, next, "the released buffer was handed out again");
        assertSame(next, Scratch.buffer(1000));
        assertEquals(1, Scratch.held());
        Scratch.releaseAll();
    }

    @Test
    void copyOfCopiesIntoTheBufferAndLeavesTheInputAlone() {
        double[] d = {3, 1, 2};
        double[] c = Scratch.copyOf(d);
        assertEquals(3, c[0]);
        assertEquals(1, c[1]);
        assertEquals(2, c[2]);
        c[0] = 99;
        assertEquals(3, d[0]);
    }
}
