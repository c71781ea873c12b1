package analytics.engine.workers;

import analytics.engine.api.AnalysisException;
import analytics.engine.proto.ErrorCode;
import io.github.resilience4j.bulkhead.Bulkhead;
import io.github.resilience4j.bulkhead.BulkheadConfig;
import io.github.resilience4j.circuitbreaker.CircuitBreaker;
import io.github.resilience4j.circuitbreaker.CircuitBreakerConfig;
import io.github.resilience4j.ratelimiter.RateLimiter;
import io.github.resilience4j.ratelimiter.RateLimiterConfig;
import io.github.resilience4j.retry.Retry;
import io.github.resilience4j.retry.RetryConfig;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Who may enter the Python path, and what an outcome says about the workers' health: rate limiter (optional)
 * → bulkhead ({@code maxConcurrent}) → circuit breaker; plus the retry policy (once, only when the worker died).
 * Every admitted request ends with exactly one {@link #finished}.
 */
final class Admission {

    private static final Logger log = LoggerFactory.getLogger(Admission.class);

    private final WorkerPoolConfig config;
    private final Bulkhead bulkhead;
    private final RateLimiter rateLimiter;
    private final CircuitBreaker breaker;
    private final Retry retry;
    private volatile long breakerOpenedNanos;

    /** @param unwrap what a failure is underneath its completion wrappers (to recognise a dead worker) */
    Admission(WorkerPoolConfig config, MeterRegistry meters, Function<Throwable, Throwable> unwrap) {
        this.config = config;
        this.bulkhead = Bulkhead.of("python", BulkheadConfig.custom()
                .maxConcurrentCalls(config.limits().maxConcurrent()).maxWaitDuration(Duration.ZERO).build());
        this.rateLimiter = config.limits().rateLimitPerSecond() <= 0 ? null : RateLimiter.of("python", RateLimiterConfig.custom()
                .limitForPeriod(config.limits().rateLimitPerSecond()).limitRefreshPeriod(Duration.ofSeconds(1))
                .timeoutDuration(Duration.ZERO).build());
        this.breaker = CircuitBreaker.of("python", CircuitBreakerConfig.custom()
                .slidingWindowType(CircuitBreakerConfig.SlidingWindowType.COUNT_BASED)
                .slidingWindowSize(config.breaker().window())
                .minimumNumberOfCalls(config.breaker().minCalls())
                .failureRateThreshold(config.breaker().failureRate())
                .waitDurationInOpenState(config.breaker().openDuration())
                .permittedNumberOfCallsInHalfOpenState(2)
                .automaticTransitionFromOpenToHalfOpenEnabled(true)
                .build());
        breaker.getEventPublisher().onStateTransition(e -> {
            if (e.getStateTransition().getToState() == CircuitBreaker.State.OPEN) {
                breakerOpenedNanos = System.nanoTime();
            }
            log.warn("Python circuit breaker: {}", e.getStateTransition());
        });
        this.retry = Retry.of("python", RetryConfig.custom()
                .maxAttempts(2)
                .waitDuration(Duration.ZERO)
                .retryOnException(t -> unwrap.apply(t) instanceof WorkerDiedException d && d.retryable())
                .failAfterMaxAttempts(false)
                .build());
        Gauge.builder("analytics.python.breaker.open", this, a -> a.breaker.getState() == CircuitBreaker.State.OPEN ? 1 : 0)
                .description("1 while the Python circuit breaker is open (Python requests answered UNAVAILABLE), else 0")
                .register(meters);
    }

    /**
     * Admits one request, or says why not (OVERLOADED for the rate limit and the bulkhead, UNAVAILABLE for an
     * open breaker). {@code downSuffix} names the last worker failure for the breaker's message.
     */
    AnalysisException admit(String downSuffix) {
        if (rateLimiter != null && !rateLimiter.acquirePermission()) {
            return new AnalysisException(ErrorCode.OVERLOADED, "Python request rate limit of "
                    + config.limits().rateLimitPerSecond() + " per second exceeded");
        }
        if (!bulkhead.tryAcquirePermission()) {
            return new AnalysisException(ErrorCode.OVERLOADED, "too many concurrent Python requests (limit "
                    + config.limits().maxConcurrent() + ")");
        }
        if (!breaker.tryAcquirePermission()) {
            bulkhead.onComplete();
            return new AnalysisException(ErrorCode.UNAVAILABLE, "Python workers are failing: circuit breaker open, "
                    + "retry in " + breakerRetrySeconds() + "s" + downSuffix);
        }
        return null;
    }

    /** An admitted request that is refused after all (every slot down): counts against the breaker. */
    void refused(AnalysisException e) {
        bulkhead.onComplete();
        breaker.onError(0, TimeUnit.NANOSECONDS, e);
    }

    /**
     * An admitted request ended. TIMEOUT and WORKER_FAILED count against the breaker; overload and
     * unavailability say nothing about the workers; algorithm errors mean the worker is fine.
     */
    void finished(long elapsedNanos, ErrorCode failure, Throwable cause) {
        bulkhead.onComplete();
        if (failure == null) {
            breaker.onSuccess(elapsedNanos, TimeUnit.NANOSECONDS);
            return;
        }
        switch (failure) {
            case TIMEOUT, WORKER_FAILED -> breaker.onError(elapsedNanos, TimeUnit.NANOSECONDS, cause);
            // a cancellation says nothing about the workers' health: not counted either way
            case OVERLOADED, UNAVAILABLE, CANCELLED -> breaker.releasePermission();
            default -> breaker.onSuccess(elapsedNanos, TimeUnit.NANOSECONDS);
        }
    }

    /** A worker failed to start: the breaker counts it (a crash loop opens it before requests pile up). */
    void startFailed(Throwable cause) {
        breaker.onError(0, TimeUnit.NANOSECONDS, cause);
    }

    Retry retry() {
        return retry;
    }

    boolean breakerOpen() {
        return breaker.getState() == CircuitBreaker.State.OPEN || breaker.getState() == CircuitBreaker.State.FORCED_OPEN;
    }

    String breakerState() {
        return breaker.getState().name();
    }

    /** The operator asked to try again (reload): close the breaker. */
    void resetBreaker() {
        if (breaker.getState() != CircuitBreaker.State.CLOSED) {
            breaker.transitionToClosedState();
        }
    }

    /** Requests admitted and not yet finished (waiting + running). */
    int inFlight() {
        return config.limits().maxConcurrent() - bulkhead.getMetrics().getAvailableConcurrentCalls();
    }

    private long breakerRetrySeconds() {
        long openFor = config.breaker().openDuration().toNanos() - (System.nanoTime() - breakerOpenedNanos);
        return Math.max(1, (long) Math.ceil(openFor / 1e9));
    }
}
