package analytics.engine.server;

import analytics.engine.metrics.EngineMetrics;
import com.sun.management.HotSpotDiagnosticMXBean;
import io.micrometer.core.instrument.DistributionSummary;
import io.micrometer.core.instrument.MeterRegistry;
import java.lang.management.ManagementFactory;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import java.util.function.IntSupplier;
import java.util.function.LongSupplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Gives memory back to the OS once the engine is idle after a burst that grew it. A burst of large
 * requests grows the Java heap (the collector keeps what it grew until a full collection; serial then
 * shrinks it in damped steps, G1 at once and uncommits the rest on its own thread) and leaves the network
 * buffers' memory on glibc's free lists; nothing returns either while no request comes (bench/README.md,
 * "Idle trim").
 *
 * <p>Checked every {@link #TICK_MS} ms on its own thread. It trims when no gRPC call is open, and none
 * started and the JIT compiled nothing for {@link #IDLE_NANOS}, and the RSS has grown by at least
 * {@link #GROWTH_BYTES} since the last trim (the first idle second after start-up trims once: start-up
 * leaves class loading's and the JIT's scratch memory behind). Not after every request: a call that does not grow memory by that much does not
 * trigger it, and after one check it waits for the next call before checking again.
 *
 * <p>A trim first drops the kernels' per-thread working memory ({@code NativeStatistics.releaseWorkingMemory}:
 * a histogram per call thread, and working copies), then lowers the heap's free ratios for a moment
 * (MinHeapFreeRatio 0, MaxHeapFreeRatio {@link #TRIM_MAX_FREE_RATIO}; {@link #START_UP_MAX_FREE_RATIO} for the
 * first one, after start-up) and runs up to {@link #MAX_GCS} full collections so the heap shrinks to its live
 * size at once instead of in steps, restores the ratios, then has glibc return its free pages
 * ({@code System.trim_native_heap}, JDK 17.0.9+). It stops between steps as soon as a call arrives; a call
 * that arrives during a collection waits for that one collection (~10–30 ms).
 */
public final class IdleTrim implements AutoCloseable {

    static final long TICK_MS = 250;
    static final long IDLE_NANOS = TimeUnit.SECONDS.toNanos(1);
    static final long GROWTH_BYTES = 32L << 20;
    static final int MAX_GCS = 4;
    static final int TRIM_MAX_FREE_RATIO = 10;
    /**
     * The first trim, after start-up, shrinks the heap to its live size exactly: the first young collection
     * after it adds one fresh eden region, of which only what is allocated gets touched (idle RSS 8 s after
     * ready, 3 runs each: 94-102 vs 100-103 MiB with 10; bench/README.md, "Sixth pass"). Not after a burst:
     * there G1's pause-time history makes that young collection grow the heap by 4 regions at once (RSS
     * 159-186 instead of 126-129 MiB 15 s after 16 concurrent 10^6-point requests).
     */
    static final int START_UP_MAX_FREE_RATIO = 0;

    private static final Logger LOG = LoggerFactory.getLogger(IdleTrim.class);

    /** What one trim did (bytes; -1 where not known). */
    record Report(long rssBefore, long rssAfter, long heapBefore, long heapAfter, int fullGcs,
                  boolean nativeTrimmed, long nanos) {

        String describe() {
            return String.format(java.util.Locale.ROOT,
                    "idle trim: RSS %d -> %d MiB in %d ms (heap committed %d -> %d MiB, %d full GCs%s)",
                    rssBefore >> 20, rssAfter >> 20, nanos / 1_000_000, heapBefore >> 20, heapAfter >> 20, fullGcs,
                    nativeTrimmed ? ", native heap trimmed" : "");
        }
    }

    /** The memory a trim acts on: the JVM's in production ({@link JvmMemory}), a fake in tests. */
    interface Memory {
        /** Resident set size in bytes, or a negative number when it cannot be read. */
        long rssBytes();

        /**
         * Gives memory back, leaving at most {@code maxFreeRatio} % of the heap free; stops between steps once
         * {@code stillIdle} turns false.
         */
        Report trim(BooleanSupplier stillIdle, int maxFreeRatio);
    }

    private final LongSupplier nanoClock;
    private final IntSupplier openCalls;
    private final LongSupplier startedCalls;
    private final LongSupplier compileMillis;
    private final Memory memory;
    private final DistributionSummary freed;
    private ScheduledExecutorService timer;

    private long seenStarted = -1;
    private long seenCompileMillis = -1;
    private long lastActivity;
    private boolean checkedSinceActivity;
    private long rssAfterLastTrim = -1; // none yet: the first idle period after start-up trims

    IdleTrim(LongSupplier nanoClock, IntSupplier openCalls, LongSupplier startedCalls, LongSupplier compileMillis,
             Memory memory, MeterRegistry registry) {
        this.nanoClock = nanoClock;
        this.openCalls = openCalls;
        this.startedCalls = startedCalls;
        this.compileMillis = compileMillis;
        this.memory = memory;
        this.lastActivity = nanoClock.getAsLong();
        this.freed = registry == null ? null : DistributionSummary.builder("analytics.idle.trim.freed")
                .baseUnit("bytes")
                .description("Idle trims (memory given back after a burst, see bench/README.md) and the RSS each freed")
                .register(registry);
    }

    /** The engine's trimmer: watches the server's gRPC calls, acts on this JVM. Not started yet. */
    public static IdleTrim forServer(CallActivity calls, MeterRegistry registry) {
        java.lang.management.CompilationMXBean jit = ManagementFactory.getCompilationMXBean();
        LongSupplier compileMillis = jit != null && jit.isCompilationTimeMonitoringSupported()
                ? jit::getTotalCompilationTime : () -> 0L;
        return new IdleTrim(System::nanoTime, calls::open, calls::started, compileMillis,
                new JvmMemory(analytics.engine.stats.NativeStatistics::releaseWorkingMemory), registry);
    }

    /**
     * Starts the checks once {@code startUp} (the warm-up) has finished, so the first trim comes after
     * start-up's own allocations rather than in the middle of them.
     */
    public synchronized void startAfter(Thread startUp) {
        if (timer != null) {
            return;
        }
        timer = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "idle-trim");
            t.setDaemon(true);
            return t;
        });
        timer.execute(() -> {
            try {
                startUp.join();
            } catch (InterruptedException e) {
                return; // closed while waiting
            }
            synchronized (this) {
                lastActivity = nanoClock.getAsLong();
            }
            timer.scheduleWithFixedDelay(this::tickLogged, TICK_MS, TICK_MS, TimeUnit.MILLISECONDS);
        });
    }

    private void tickLogged() {
        try {
            Report r = tick();
            if (r != null) {
                LOG.info(r.describe());
            }
        } catch (RuntimeException e) {
            LOG.warn("idle trim failed: {}", e.toString());
        }
    }

    /** One check (the timer calls it every {@link #TICK_MS} ms); the report when it trimmed, else null. */
    synchronized Report tick() {
        long now = nanoClock.getAsLong();
        long started = startedCalls.getAsLong();
        long compiled = compileMillis.getAsLong();
        // The JIT compiling counts as activity too: its compiler threads malloc and free arenas of up to
        // ~20 MB per compilation, so glibc's trim only keeps what it returned once they are quiet (after
        // start-up that is a few seconds after the warm-up, not the first idle second).
        if (openCalls.getAsInt() > 0 || started != seenStarted || compiled != seenCompileMillis) {
            seenStarted = started;
            seenCompileMillis = compiled;
            lastActivity = now;
            checkedSinceActivity = false;
            return null;
        }
        if (now - lastActivity < IDLE_NANOS) {
            return null;
        }
        long rss = memory.rssBytes();
        if (rss >= 0 && rss < rssAfterLastTrim) {
            // Memory still going down after the trim returned: G1 uncommits the shrunk heap on its own thread
            // (~100 ms later). The next burst's growth counts from this lower point, not from the RSS read
            // right after the collections, or a burst that grows less than that gap would never be trimmed.
            rssAfterLastTrim = rss;
        }
        if (checkedSinceActivity) {
            return null;
        }
        checkedSinceActivity = true; // idle memory does not grow: look again only after the next call
        if (rss < 0 || (rssAfterLastTrim >= 0 && rss - rssAfterLastTrim < GROWTH_BYTES)) {
            return null;
        }
        int maxFreeRatio = rssAfterLastTrim < 0 ? START_UP_MAX_FREE_RATIO : TRIM_MAX_FREE_RATIO;
        Report r = memory.trim(() -> openCalls.getAsInt() == 0 && startedCalls.getAsLong() == started, maxFreeRatio);
        rssAfterLastTrim = r.rssAfter() >= 0 ? r.rssAfter() : rss;
        if (freed != null && r.rssBefore() >= 0 && r.rssAfter() >= 0) {
            freed.record(Math.max(0, r.rssBefore() - r.rssAfter()));
        }
        return r;
    }

    @Override
    public synchronized void close() {
        if (timer != null) {
            timer.shutdownNow();
        }
    }

    /** This JVM: caches dropped, heap shrink through the free ratios and full collections, then glibc's trim. */
    static final class JvmMemory implements Memory {

        private static final String MIN = "MinHeapFreeRatio";
        private static final String MAX = "MaxHeapFreeRatio";
        private final Runnable dropCaches;
        private boolean nativeTrimUnavailable;

        /** @param dropCaches run first, so what it lets go of is collected by the same trim */
        JvmMemory(Runnable dropCaches) {
            this.dropCaches = dropCaches;
        }

        @Override
        public long rssBytes() {
            double v = EngineMetrics.residentBytes();
            return Double.isNaN(v) ? -1 : (long) v;
        }

        private static long heapCommitted() {
            return ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getCommitted();
        }

        @Override
        public Report trim(BooleanSupplier stillIdle, int maxFreeRatio) {
            long t0 = System.nanoTime();
            long rss0 = rssBytes();
            long heap0 = heapCommitted();
            int gcs = 0;
            HotSpotDiagnosticMXBean hs = ManagementFactory.getPlatformMXBean(HotSpotDiagnosticMXBean.class);
            String min = hs.getVMOption(MIN).getValue();
            String max = hs.getVMOption(MAX).getValue();
            if (stillIdle.getAsBoolean()) {
                dropCaches.run();
            }
            try {
                // Min first: MinHeapFreeRatio may never exceed MaxHeapFreeRatio, on the way down or back.
                hs.setVMOption(MIN, "0");
                hs.setVMOption(MAX, Integer.toString(maxFreeRatio));
                long prev = heap0;
                // Serial GC shrinks by 0 %, 10 %, 40 %, then 100 % of the excess in consecutive full
                // collections (ShrinkHeapInSteps): up to four, fewer once the heap stops shrinking (G1, the
                // default collector, shrinks in the first: two).
                while (gcs < MAX_GCS && stillIdle.getAsBoolean()) {
                    System.gc();
                    gcs++;
                    long now = heapCommitted();
                    if (gcs >= 2 && now >= prev) {
                        break;
                    }
                    prev = now;
                }
            } catch (IllegalArgumentException e) {
                LOG.debug("idle trim: heap free ratios not settable here ({}); heap not shrunk", e.getMessage());
            } finally {
                hs.setVMOption(MAX, max);
                hs.setVMOption(MIN, min);
            }
            boolean trimmed = stillIdle.getAsBoolean() && trimNativeHeap();
            return new Report(rss0, rssBytes(), heap0, heapCommitted(), gcs, trimmed, System.nanoTime() - t0);
        }

        /**
         * glibc keeps freed memory (the network buffers of a burst, the JIT's arenas) on its free lists;
         * {@code System.trim_native_heap} (malloc_trim) returns it. The diagnostic command exists from JDK
         * 17.0.9 on and only where the C library is glibc: elsewhere this is a no-op after one debug line.
         */
        private boolean trimNativeHeap() {
            if (nativeTrimUnavailable) {
                return false;
            }
            try {
                javax.management.MBeanServer server = ManagementFactory.getPlatformMBeanServer();
                Object out = server.invoke(new javax.management.ObjectName("com.sun.management:type=DiagnosticCommand"),
                        "systemTrimNativeHeap", new Object[] {new String[0]}, new String[] {String[].class.getName()});
                if (String.valueOf(out).toLowerCase(java.util.Locale.ROOT).contains("not available")) {
                    nativeTrimUnavailable = true; // not glibc: the command answers but cannot trim
                    LOG.debug("idle trim: {}", out);
                    return false;
                }
                return true;
            } catch (Exception | LinkageError e) {
                nativeTrimUnavailable = true;
                LOG.debug("idle trim: System.trim_native_heap not available ({}); heap trim only", e.toString());
                return false;
            }
        }
    }
}
