package analytics.engine.metrics;

import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;
import io.micrometer.core.instrument.binder.jvm.ClassLoaderMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmGcMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmMemoryMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmThreadMetrics;
import io.micrometer.core.instrument.binder.netty4.NettyAllocatorMetrics;
import io.micrometer.core.instrument.binder.system.FileDescriptorMetrics;
import io.micrometer.core.instrument.binder.system.ProcessorMetrics;
import io.micrometer.core.instrument.binder.system.UptimeMetrics;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import io.netty.buffer.ByteBufAllocator;
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
        // Netty's buffer memory outside the Java heap: gRPC's network buffers come from ByteBufAllocator.DEFAULT
        // (with the default flags Netty's adaptive allocator), the frames to the workers from the pooled one.
        for (ByteBufAllocator a : new java.util.LinkedHashSet<>(
                java.util.List.of(ByteBufAllocator.DEFAULT, PooledByteBufAllocator.DEFAULT))) { // one when the same
            if (a instanceof ByteBufAllocatorMetricProvider p) {
                new NettyAllocatorMetrics(p).bindTo(registry);
            }
        }
        Gauge.builder("analytics.requests.inflight", inFlight, AtomicInteger::get)
                .description("Analysis requests being computed now").register(registry);
        // Micrometer has no resident-memory meter; the name is the one Prometheus client libraries use, so
        // the memory alert of deploy/prometheus compares it (plus the workers') with the unit's MemoryMax.
        Gauge.builder("process.resident.memory", EngineMetrics::residentBytes).baseUnit("bytes")
                .description("Resident set size of the engine (JVM) process, from /proc/self/status").register(registry);
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
