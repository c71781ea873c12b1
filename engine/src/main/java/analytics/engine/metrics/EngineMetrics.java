package analytics.engine.metrics;

import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;
import io.micrometer.core.instrument.binder.jvm.ClassLoaderMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmGcMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmMemoryMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmThreadMetrics;
import io.micrometer.core.instrument.binder.system.FileDescriptorMetrics;
import io.micrometer.core.instrument.binder.system.ProcessorMetrics;
import io.micrometer.core.instrument.binder.system.UptimeMetrics;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import io.netty.buffer.ByteBufAllocator;
import io.netty.buffer.ByteBufAllocatorMetric;
import io.netty.buffer.ByteBufAllocatorMetricProvider;
import io.netty.buffer.PooledByteBufAllocator;
import java.time.Duration;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The engine's Micrometer registry, exposed as Prometheus text on GET /metrics. Request meters are
 * tagged by algorithm (bounded: unknown names are tagged "unknown"), implementation and outcome.
 */
public final class EngineMetrics {

    private final PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
    private final AtomicInteger inFlight = new AtomicInteger();
    private final ConcurrentHashMap<String, Timer> timers = new ConcurrentHashMap<>();
    private final ConcurrentHashMap<String, Counter> counters = new ConcurrentHashMap<>();

    public EngineMetrics() {
        registry.config().commonTags("service", "analytics-engine");
        new JvmMemoryMetrics().bindTo(registry);
        new JvmGcMetrics().bindTo(registry);
        new JvmThreadMetrics().bindTo(registry);
        new ClassLoaderMetrics().bindTo(registry);
        new ProcessorMetrics().bindTo(registry);
        new UptimeMetrics().bindTo(registry);
        new FileDescriptorMetrics().bindTo(registry);
        // What Netty's buffer pools hold: gRPC's network buffers come from ByteBufAllocator.DEFAULT (with the
        // default flags the adaptive allocator), the frames to the workers from the pooled one. Read at scrape
        // time only: touching the allocators initialises Netty's buffer classes, which code that builds metrics
        // without serving (the fuzz targets) must not need.
        for (String pool : new String[] {"grpc", "workers"}) {
            for (String type : new String[] {"direct", "heap"}) {
                Gauge.builder("analytics.netty.memory.used", () -> nettyUsedBytes(pool.equals("grpc"), type.equals("direct")))
                        .tags("pool", pool, "memory_type", type).baseUnit("bytes")
                        .description("Memory Netty's buffer pool holds (in use or kept for reuse): pool=grpc the gRPC "
                                + "network buffers, pool=workers the frames to the Python workers")
                        .register(registry);
            }
        }
        Gauge.builder("analytics.requests.inflight", inFlight, AtomicInteger::get)
                .description("Analysis requests being computed now").register(registry);
        // Micrometer has no resident-memory meter; the name is the one Prometheus client libraries use, so
        // the memory alert of deploy/prometheus compares it (plus the workers') with the unit's MemoryMax.
        Gauge.builder("process.resident.memory", EngineMetrics::residentBytes).baseUnit("bytes")
                .description("Resident set size of the engine (JVM) process, from /proc/self/status").register(registry);
    }

    private static double nettyUsedBytes(boolean grpc, boolean direct) {
        ByteBufAllocator a = grpc ? ByteBufAllocator.DEFAULT : PooledByteBufAllocator.DEFAULT;
        if (!(a instanceof ByteBufAllocatorMetricProvider p)) {
            return Double.NaN; // an allocator without metrics (e.g. -Dio.netty.allocator.type=unpooled)
        }
        ByteBufAllocatorMetric m = p.metric();
        return direct ? m.usedDirectMemory() : m.usedHeapMemory();
    }

    /** VmRSS of this process in bytes, NaN where /proc is not available (not Linux). */
    public static double residentBytes() {
        try {
            for (String line : java.nio.file.Files.readAllLines(java.nio.file.Path.of("/proc/self/status"))) {
                if (line.startsWith("VmRSS:")) {
                    return Long.parseLong(line.replaceAll("[^0-9]", "")) * 1024.0;
                }
            }
        } catch (java.io.IOException | RuntimeException e) {
            // not Linux / no /proc: no value rather than a wrong one
        }
        return Double.NaN;
    }

    public MeterRegistry registry() {
        return registry;
    }

    /** Prometheus text exposition format (version 0.0.4). */
    public String scrape() {
        return registry.scrape();
    }

    public InFlight started() {
        inFlight.incrementAndGet();
        return new InFlight();
    }

    /** One request being computed; {@link #finished} records it exactly once. */
    public final class InFlight {
        private boolean done;

        public void finished(String algorithm, String implementation, String outcome, long nanos) {
            if (done) {
                return;
            }
            done = true;
            inFlight.decrementAndGet();
            String key = algorithm + '|' + implementation + '|' + outcome;
            counters.computeIfAbsent(key, k -> Counter.builder("analytics.requests")
                    .description("Analysis requests by algorithm, implementation and outcome")
                    .tags("algorithm", algorithm, "implementation", implementation, "outcome", outcome)
                    .register(registry)).increment();
            timers.computeIfAbsent(algorithm + '|' + implementation, k -> Timer.builder("analytics.request.duration")
                    .description("Time to answer an analysis request, engine side")
                    .tags("algorithm", algorithm, "implementation", implementation)
                    .publishPercentileHistogram()
                    .minimumExpectedValue(Duration.ofMillis(0).plusNanos(20_000))
                    .maximumExpectedValue(Duration.ofSeconds(120))
                    .register(registry)).record(nanos, TimeUnit.NANOSECONDS);
        }
    }
}
