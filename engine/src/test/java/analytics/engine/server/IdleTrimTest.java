package analytics.engine.server;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.sun.management.HotSpotDiagnosticMXBean;
import io.grpc.Attributes;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.ServerCall;
import io.grpc.Status;
import io.micrometer.core.instrument.DistributionSummary;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.lang.management.ManagementFactory;
import java.util.ArrayList;
import java.util.List;
import java.util.function.BooleanSupplier;
import org.junit.jupiter.api.Test;

/**
 * The idle trim's trigger, on an injected clock, call counters, JIT counter and memory (no sleeps, no
 * timer thread): it trims once after start-up, after a burst that grew memory once idle for a second, never
 * while a call is open, not after calls that did not grow memory, and stops a trim when a call arrives.
 */
class IdleTrimTest {

    private static final long MIB = 1L << 20;
    private static final long TICK_NANOS = IdleTrim.TICK_MS * 1_000_000;

    private long now = 1_000_000_000L;
    private int open;
    private long started;
    private long compileMillis;
    private final FakeMemory memory = new FakeMemory();
    private final SimpleMeterRegistry registry = new SimpleMeterRegistry();
    private final IdleTrim trim = new IdleTrim(() -> now, () -> open, () -> started, () -> compileMillis, memory,
            registry);

    private final class FakeMemory implements IdleTrim.Memory {
        long rss = 100 * MIB;
        long rssAfterTrim = 90 * MIB;
        final List<Long> trimmedAt = new ArrayList<>();
        final List<Integer> ratios = new ArrayList<>();
        Runnable duringTrim = () -> { };
        Boolean stillIdleAfterDuringTrim;

        @Override
        public long rssBytes() {
            return rss;
        }

        @Override
        public IdleTrim.Report trim(BooleanSupplier stillIdle, int maxFreeRatio) {
            ratios.add(maxFreeRatio);
            assertEquals(0, open, "a trim started with a call open");
            assertTrue(stillIdle.getAsBoolean(), "a trim started while not idle");
            trimmedAt.add(now);
            duringTrim.run();
            stillIdleAfterDuringTrim = stillIdle.getAsBoolean();
            long before = rss;
            rss = rssAfterTrim;
            return new IdleTrim.Report(before, rss, 50 * MIB, 16 * MIB, 4, true, 30_000_000L);
        }
    }

    /** Advances the clock by one tick and runs the check, like the timer does. */
    private IdleTrim.Report tick() {
        now += TICK_NANOS;
        return trim.tick();
    }

    /** Ticks for {@code millis}; the reports of the trims that ran. */
    private List<IdleTrim.Report> ticks(long millis) {
        List<IdleTrim.Report> out = new ArrayList<>();
        for (long t = 0; t < millis; t += IdleTrim.TICK_MS) {
            IdleTrim.Report r = tick();
            if (r != null) {
                out.add(r);
            }
        }
        return out;
    }

    private void startUpTrimDone() {
        assertEquals(1, ticks(2_000).size(), "start-up trim");
        memory.trimmedAt.clear();
    }

    @Test
    void trimsOnceAfterStartUpOnceIdleForASecond() {
        long t0 = now;
        assertEquals(List.of(), ticks(1_000), "not within the first idle second");
        List<IdleTrim.Report> r = ticks(60_000);
        assertEquals(1, r.size(), "exactly one trim after start-up");
        assertTrue(memory.trimmedAt.get(0) - t0 >= IdleTrim.IDLE_NANOS);
        assertTrue(memory.trimmedAt.get(0) - t0 <= IdleTrim.IDLE_NANOS + 2 * TICK_NANOS, "soon after the idle second");
    }

    @Test
    void burstThatGrewMemoryIsTrimmedOnceIdleButNeverWhileACallIsOpen() {
        startUpTrimDone();
        open = 16;
        started = 16;
        memory.rss = 300 * MIB;
        assertEquals(List.of(), ticks(30_000), "trimmed with calls open");
        open = 0; // the burst ends between two ticks
        started = 48;
        long lastBusyTick = now + TICK_NANOS; // the next tick sees the new calls: the last activity
        List<IdleTrim.Report> r = ticks(10_000);
        assertEquals(1, r.size());
        assertEquals(300 * MIB, r.get(0).rssBefore());
        long at = memory.trimmedAt.get(0);
        assertTrue(at - lastBusyTick >= IdleTrim.IDLE_NANOS, "trimmed less than a second after the last call");
        assertTrue(at - lastBusyTick <= IdleTrim.IDLE_NANOS + TICK_NANOS, "trimmed late");
        assertEquals(List.of(IdleTrim.START_UP_MAX_FREE_RATIO, IdleTrim.TRIM_MAX_FREE_RATIO), memory.ratios,
                "the start-up trim shrinks the heap to its live size, a trim after a burst keeps some room");
        DistributionSummary freed = registry.find("analytics.idle.trim.freed").summary();
        assertNotNull(freed);
        assertEquals(2, freed.count()); // start-up and this one
        assertEquals((100 - 90) * MIB + (300 - 90) * MIB, (long) freed.totalAmount());
    }

    @Test
    void callsThatKeepComingLessThanASecondApartAreNeverInterrupted() {
        startUpTrimDone();
        memory.rss = 300 * MIB;
        for (int i = 0; i < 100; i++) { // one short call every 750 ms, for 75 s; never open at a tick
            started++;
            assertEquals(List.of(), ticks(750), "trimmed between calls that keep coming");
        }
        assertEquals(1, ticks(1_500).size(), "trimmed once they stop");
    }

    @Test
    void notAfterCallsThatDidNotGrowMemoryBeyondTheThreshold() {
        startUpTrimDone();
        started = 1;
        memory.rss = memory.rssAfterTrim + IdleTrim.GROWTH_BYTES - MIB;
        assertEquals(List.of(), ticks(10_000));
        started = 2;
        memory.rss = memory.rssAfterTrim + IdleTrim.GROWTH_BYTES;
        assertEquals(1, ticks(10_000).size());
    }

    @Test
    void growthCountsFromWhereMemorySettledAfterTheTrimNotFromTheReadingRightAfterIt() {
        startUpTrimDone();
        started = 1;
        memory.rss = 400 * MIB;
        memory.rssAfterTrim = 330 * MIB; // read right after the collections: G1 has not uncommitted yet
        assertEquals(1, ticks(2_000).size());
        memory.rss = 110 * MIB; // uncommitted a moment later, while still idle
        assertEquals(List.of(), ticks(2_000));
        started = 2; // the next burst grows memory by 220 MiB over where it settled, less than 32 over 330
        memory.rss = 330 * MIB;
        assertEquals(1, ticks(2_000).size(), "a burst after a concurrent uncommit is trimmed");
    }

    @Test
    void theJitCompilingCountsAsActivity() {
        startUpTrimDone();
        started = 1;
        memory.rss = 300 * MIB;
        for (int i = 0; i < 20; i++) { // compiling for 5 s after the call
            compileMillis += 7;
            assertNull(tick());
        }
        assertEquals(List.of(), ticks(750));
        assertEquals(1, ticks(500).size());
    }

    @Test
    void aTrimStopsWhenACallArrivesAndTheNextTickSeesIt() {
        startUpTrimDone();
        started = 1;
        memory.rss = 300 * MIB;
        memory.duringTrim = () -> started++; // a call starts (and ends) while the collections run
        assertEquals(1, ticks(2_000).size());
        assertFalse(memory.stillIdleAfterDuringTrim, "the trim was not told about the new call");
        memory.duringTrim = () -> open++;
        started++;
        memory.rss = 300 * MIB;
        assertEquals(1, ticks(2_000).size());
        assertFalse(memory.stillIdleAfterDuringTrim, "the trim was not told about the open call");
        assertEquals(List.of(), ticks(30_000), "trimmed with a call open");
    }

    @Test
    void withoutAnRssReadingItNeverTrims() {
        memory.rss = -1;
        assertEquals(List.of(), ticks(30_000));
    }

    @Test
    void theJvmTrimDropsCachesRestoresTheHeapFreeRatiosAndStopsWhenNotIdle() {
        HotSpotDiagnosticMXBean hs = ManagementFactory.getPlatformMXBean(HotSpotDiagnosticMXBean.class);
        String min = hs.getVMOption("MinHeapFreeRatio").getValue();
        String max = hs.getVMOption("MaxHeapFreeRatio").getValue();
        java.util.concurrent.atomic.AtomicInteger drops = new java.util.concurrent.atomic.AtomicInteger();
        IdleTrim.JvmMemory jvm = new IdleTrim.JvmMemory(drops::incrementAndGet);
        IdleTrim.Report r = jvm.trim(() -> true, IdleTrim.TRIM_MAX_FREE_RATIO);
        assertEquals(1, drops.get(), "the kernels' working memory is dropped before the collections");
        assertTrue(r.fullGcs() >= 1 && r.fullGcs() <= IdleTrim.MAX_GCS, r.describe());
        assertEquals(min, hs.getVMOption("MinHeapFreeRatio").getValue());
        assertEquals(max, hs.getVMOption("MaxHeapFreeRatio").getValue());
        assertTrue(r.describe().startsWith("idle trim: RSS "), r.describe());
        IdleTrim.Report busy = jvm.trim(() -> false, IdleTrim.TRIM_MAX_FREE_RATIO);
        assertEquals(0, busy.fullGcs(), "collected although a call was open");
        assertEquals(1, drops.get(), "working memory dropped although a call was open");
        assertFalse(busy.nativeTrimmed());
        assertEquals(max, hs.getVMOption("MaxHeapFreeRatio").getValue());
    }

    @Test
    void callActivityCountsACallFromItsHeadersToItsEnd() {
        CallActivity calls = new CallActivity();
        List<ServerCall.Listener<String>> listeners = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            listeners.add(calls.interceptCall(new NoopCall(), new Metadata(), (c, h) -> new ServerCall.Listener<>() { }));
        }
        assertEquals(3, calls.open());
        assertEquals(3, calls.started());
        listeners.get(0).onComplete();
        listeners.get(1).onCancel();
        listeners.get(1).onComplete(); // not reported twice
        assertEquals(1, calls.open());
        listeners.get(2).onComplete();
        assertEquals(0, calls.open());
        assertEquals(3, calls.started());
        try {
            calls.interceptCall(new NoopCall(), new Metadata(), (c, h) -> {
                throw new IllegalStateException("handler failed");
            });
        } catch (IllegalStateException expected) {
            // the transport gets no listener, so this call's end is never reported: not counted as open
        }
        assertEquals(0, calls.open());
        assertEquals(4, calls.started());
    }

    private static final class NoopCall extends ServerCall<String, String> {
        @Override
        public void request(int numMessages) { }

        @Override
        public void sendHeaders(Metadata headers) { }

        @Override
        public void sendMessage(String message) { }

        @Override
        public void close(Status status, Metadata trailers) { }

        @Override
        public boolean isCancelled() {
            return false;
        }

        @Override
        public Attributes getAttributes() {
            return Attributes.EMPTY;
        }

        @Override
        public MethodDescriptor<String, String> getMethodDescriptor() {
            return null;
        }
    }
}
