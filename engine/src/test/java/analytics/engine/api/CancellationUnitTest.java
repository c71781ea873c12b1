package analytics.engine.api;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

class CancellationUnitTest {

    @Test
    void firstCauseWinsAndListenersRunOnce() {
        Cancellation c = new Cancellation();
        List<Cancellation.Cause> seen = new ArrayList<>();
        c.onCancel(seen::add);
        assertFalse(c.isCancelled());
        assertNull(c.cause());
        assertTrue(c.cancel(Cancellation.Kind.CANCELLED, "client went away"));
        assertFalse(c.cancel(Cancellation.Kind.DEADLINE, "later"));
        assertEquals(1, seen.size());
        assertEquals(Cancellation.Kind.CANCELLED, c.cause().kind());
        assertEquals("client went away", seen.get(0).reason());
        assertEquals(0, c.listenerCount());
    }

    @Test
    void aLateListenerRunsAtOnceAndARemovedOneNever() {
        Cancellation c = new Cancellation();
        AtomicInteger removed = new AtomicInteger();
        Runnable unlisten = c.onCancel(x -> removed.incrementAndGet());
        unlisten.run();
        assertEquals(0, c.listenerCount());
        c.cancel(Cancellation.Kind.DEADLINE, "deadline");
        assertEquals(0, removed.get());
        AtomicInteger late = new AtomicInteger();
        c.onCancel(x -> late.incrementAndGet());
        assertEquals(1, late.get());
        assertEquals(0, c.listenerCount());
    }

    @Test
    void aFailingListenerDoesNotStopTheOthers() {
        Cancellation c = new Cancellation();
        AtomicInteger ran = new AtomicInteger();
        c.onCancel(x -> {
            throw new IllegalStateException("listener bug");
        });
        c.onCancel(x -> ran.incrementAndGet());
        c.cancel(Cancellation.Kind.CANCELLED, "x");
        assertEquals(1, ran.get());
    }

    @Test
    void listenersRegisteredWhileCancellingRunExactlyOnce() throws Exception {
        for (int round = 0; round < 200; round++) {
            Cancellation c = new Cancellation();
            AtomicInteger runs = new AtomicInteger();
            CountDownLatch go = new CountDownLatch(1);
            Thread registrar = new Thread(() -> {
                try {
                    go.await();
                } catch (InterruptedException e) {
                    return;
                }
                for (int i = 0; i < 50; i++) {
                    c.onCancel(x -> runs.incrementAndGet());
                }
            });
            registrar.start();
            go.countDown();
            c.cancel(Cancellation.Kind.CANCELLED, "race");
            registrar.join();
            assertEquals(50, runs.get(), "round " + round);
            assertEquals(0, c.listenerCount());
        }
    }
}
