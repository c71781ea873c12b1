package analytics.engine.server;

import static analytics.engine.workers.WorkerTestSupport.await;
import static analytics.engine.workers.WorkerTestSupport.count;
import static analytics.engine.workers.WorkerTestSupport.pidOf;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import analytics.engine.proto.AnalysisOptions;
import analytics.engine.proto.AnalysisRequest;
import analytics.engine.proto.AnalysisResponse;
import analytics.engine.proto.AnalyticsEngineGrpc;
import analytics.engine.proto.BatchAnalysisRequest;
import analytics.engine.proto.ProgressUpdate;
import analytics.engine.workers.PythonWorkerPool;
import analytics.engine.workers.WorkerTestSupport;
import io.grpc.Context;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.NettyChannelBuilder;
import io.grpc.stub.StreamObserver;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * Issue 16, end to end with real workers: a cancelled call, an expired deadline and a dropped connection
 * free the worker; BatchAnalyze cancels all its items; 100 start/cancel cycles leak nothing; and
 * AnalyzeWithProgress reports queued/running/progress, then the result Analyze returns.
 *
 * <p>Every wait awaits a state (with a generous timeout); the cancel-to-free times are printed (CANCEL ...
 * lines) and recorded by the pool's {@code analytics.python.cancel.release} timer, not asserted.
 */
class CancellationTest {

    private final List<AutoCloseable> open = new ArrayList<>();
    private final ScheduledExecutorService timer = Executors.newSingleThreadScheduledExecutor();
    private SimpleMeterRegistry meters;
    private PythonWorkerPool pool;
    private TestEngine engine;

    @AfterEach
    void stop() throws Exception {
        timer.shutdownNow();
        for (int i = open.size() - 1; i >= 0; i--) {
            open.get(i).close();
        }
    }

    /**
     * {@code workers} real workers behind a TestEngine. The pool waits 10 s (not 250 ms) for a worker to stop a
     * cancelled computation before it kills it: a loaded test machine must not turn a stop into a kill.
     */
    private void start(int workers) throws Exception {
        start(workers, Duration.ofSeconds(10));
    }

    private void start(int workers, Duration stopWait) throws Exception {
        meters = new SimpleMeterRegistry();
        pool = new PythonWorkerPool(WorkerTestSupport.config().withWorkers(workers), meters).cancelStopWait(stopWait);
        open.add(pool);
        pool.start();
        assertTrue(pool.awaitReady(Duration.ofSeconds(60), true), "workers did not start: " + pool.status());
        engine = new TestEngine(Map.of("workers", Integer.toString(workers), "test_mode", "true"), pool);
        open.add(engine);
    }

    /** k-means over 30 000 points with many restarts: tens of seconds of work, unless stopped. */
    private static AnalysisRequest longKmeans(String id) {
        Random r = new Random(16);
        AnalysisRequest.Builder b = AnalysisRequest.newBuilder().setRequestId(id).setAlgorithm("kmeans")
                .putParams("k", "8").putParams("n_init", "300").putParams("max_iter", "1000")
                .addShape(30_000).addShape(2)
                .setOptions(AnalysisOptions.newBuilder().setAllowPython(true).setTimeoutMs(600_000).setIncludeMetadata(true));
        for (int i = 0; i < 60_000; i++) {
            b.addData(r.nextGaussian());
        }
        return b.build();
    }

    private static AnalysisRequest sleep(String id, double seconds) {
        return AnalysisRequest.newBuilder().setRequestId(id).setAlgorithm("_test_sleep")
                .putParams("seconds", Double.toString(seconds))
                .setOptions(AnalysisOptions.newBuilder().setAllowPython(true).setTimeoutMs(600_000)).build();
    }

    private static AnalysisRequest smallKmeans(String id) {
        return AnalysisRequest.newBuilder().setRequestId(id).setAlgorithm("kmeans").putParams("k", "2")
                .addAllData(List.of(1.0, 1.1, 0.9, 10.0, 10.2, 9.8)).build();
    }

    /** Collects a unary/stream call's end: the error it failed with, or an AssertionError when it answered. */
    private static final class Outcome<T> implements StreamObserver<T> {
        final CompletableFuture<Throwable> end = new CompletableFuture<>();
        final List<T> received = new CopyOnWriteArrayList<>();

        @Override
        public void onNext(T value) {
            received.add(value);
        }

        @Override
        public void onError(Throwable t) {
            end.complete(t);
        }

        @Override
        public void onCompleted() {
            end.complete(null);
        }

        Status.Code code() throws Exception {
            Throwable t = end.get(60, TimeUnit.SECONDS);
            return t == null ? Status.Code.OK : Status.fromThrowable(t).getCode();
        }
    }

    private long restartsTotal() {
        return ((Number) pool.status().get("restarts_total")).longValue();
    }

    /** The pool counts a stop when the worker's answer is processed, just after /health shows it free. */
    private void awaitCancellations(String how, double expected) {
        await("analytics.python.cancellations{how=" + how + "} = " + expected, Duration.ofSeconds(5),
                () -> cancellations(how) == expected);
    }

    /** SIGIO (29 on Linux) is in the process's ignored-signals mask (/proc/PID/status, SigIgn, hexadecimal). */
    private static boolean ignoresSigio(long pid) {
        try {
            for (String line : java.nio.file.Files.readAllLines(java.nio.file.Path.of("/proc/" + pid + "/status"))) {
                if (line.startsWith("SigIgn:")) {
                    return (Long.parseUnsignedLong(line.substring(7).trim(), 16) & (1L << (29 - 1))) != 0;
                }
            }
        } catch (java.io.IOException e) {
            return false; // not there (yet or any more)
        }
        return false;
    }

    private double cancellations(String how) {
        return meters.get("analytics.python.cancellations").tag("how", how).counter().count();
    }

    /** Sum of analytics_requests_total for this algorithm and outcome, from the engine's /metrics. */
    private double requests(String algorithm, String outcome) throws Exception {
        String text = engine.get("/metrics");
        Matcher m = Pattern.compile("analytics_requests_total\\{([^}]*)\\} ([0-9.Ee+-]+)").matcher(text);
        double sum = 0;
        while (m.find()) {
            if (m.group(1).contains("algorithm=\"" + algorithm + "\"") && m.group(1).contains("outcome=\"" + outcome + "\"")) {
                sum += Double.parseDouble(m.group(2));
            }
        }
        return sum;
    }

    /** Awaits busy 0 and returns the ms from {@code fromNanos} (10 ms polling: a log value, not an assertion). */
    private long awaitFree(long fromNanos) {
        await("no worker busy", Duration.ofSeconds(10), () -> count(pool, "busy") == 0);
        return (System.nanoTime() - fromNanos) / 1_000_000;
    }

    private void printRelease(String what, long polledMs) {
        var t = meters.get("analytics.python.cancel.release").timer();
        System.out.printf("CANCEL %s: %s; pool cancel.release (cancel -> worker free) mean %.1f ms, max %.1f ms, "
                + "n=%d%n", what, polledMs < 0 ? "-" : "/health busy 0 seen " + polledMs + " ms after the cancel",
                t.mean(TimeUnit.NANOSECONDS) / 1e6, t.max(TimeUnit.NANOSECONDS) / 1e6, t.count());
    }

    @Test
    void cancelledKmeansIsStoppedOnItsWorkerWhichTakesTheNextRequestAtOnce() throws Exception {
        start(1);
        long pid = pidOf(pool, 0);
        long restarts = restartsTotal();
        Context.CancellableContext ctx = Context.current().withCancellation();
        Outcome<AnalysisResponse> call = new Outcome<>();
        ctx.run(() -> AnalyticsEngineGrpc.newStub(engine.channel).analyze(longKmeans("km-cancel"), call));
        await("the kmeans to run", Duration.ofSeconds(30), () -> count(pool, "busy") == 1);
        long[] cancelledAt = new long[1];
        timer.schedule(() -> {
            cancelledAt[0] = System.nanoTime();
            ctx.cancel(null);
        }, 1, TimeUnit.SECONDS).get(10, TimeUnit.SECONDS);
        assertEquals(Status.Code.CANCELLED, call.code());
        printRelease("kmeans (client cancel)", awaitFree(cancelledAt[0]));
        awaitCancellations("stopped", 1.0);
        awaitCancellations("killed", 0.0);
        assertEquals(pid, pidOf(pool, 0), "the same worker process serves on");
        assertEquals(restarts, restartsTotal());
        assertEquals("CLOSED", pool.status().get("breaker"));
        long t0 = System.nanoTime();
        AnalysisResponse next = engine.stub.withDeadlineAfter(30, TimeUnit.SECONDS).analyze(smallKmeans("km-next"));
        System.out.printf("CANCEL next request answered in %.1f ms%n", (System.nanoTime() - t0) / 1e6);
        assertTrue(next.getSuccess(), next.getErrorMessage());
        assertEquals("0", next.getMetadata().getStatsOrThrow("worker_id"));
        await("the cancellation to be counted", Duration.ofSeconds(5),
                () -> uncheckedRequests("kmeans", "CANCELLED") == 1.0);
    }

    private double uncheckedRequests(String algorithm, String outcome) {
        try {
            return requests(algorithm, outcome);
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    @Test
    void expiredDeadlineFreesTheWorker() throws Exception {
        start(1);
        long pid = pidOf(pool, 0);
        long t0 = System.nanoTime();
        StatusRuntimeException e = org.junit.jupiter.api.Assertions.assertThrows(StatusRuntimeException.class,
                () -> engine.stub.withDeadlineAfter(1, TimeUnit.SECONDS).analyze(longKmeans("km-deadline")));
        assertEquals(Status.Code.DEADLINE_EXCEEDED, e.getStatus().getCode());
        long deadlineAt = t0 + TimeUnit.SECONDS.toNanos(1);
        System.out.printf("CANCEL kmeans (deadline): /health busy 0 seen %d ms after the deadline%n",
                awaitFree(deadlineAt));
        // At its deadline the client cancels the call (RST_STREAM) while the engine's copy of the deadline passes:
        // whichever the engine sees first names the outcome (CANCELLED or TIMEOUT); either way the worker is asked
        // to stop the kmeans, does, and stays.
        await("the request to be counted", Duration.ofSeconds(5),
                () -> uncheckedRequests("kmeans", "CANCELLED") + uncheckedRequests("kmeans", "TIMEOUT") == 1.0);
        await("one TIMEOUT or one stop counted by the pool", Duration.ofSeconds(5),
                () -> meters.get("analytics.python.timeouts").counter().count() + cancellations("stopped") == 1.0);
        assertEquals(pid, pidOf(pool, 0), "stopped, not replaced");
        awaitCancellations("killed", 0.0);
        AnalysisResponse next = engine.stub.withDeadlineAfter(60, TimeUnit.SECONDS).analyze(smallKmeans("after-deadline"));
        assertTrue(next.getSuccess(), next.getErrorMessage());
    }

    @Test
    void timeoutMsAnswersTimeoutAndTheWorkerStopsAndStays() throws Exception {
        start(1);
        long pid = pidOf(pool, 0);
        AnalysisRequest slow = AnalysisRequest.newBuilder().setRequestId("slow").setAlgorithm("_test_sleep")
                .putParams("seconds", "600")
                .setOptions(AnalysisOptions.newBuilder().setAllowPython(true).setTimeoutMs(700)).build();
        AnalysisResponse r = engine.stub.withDeadlineAfter(60, TimeUnit.SECONDS).analyze(slow);
        assertEquals(analytics.engine.proto.ErrorCode.TIMEOUT, r.getErrorCode(), r.getErrorMessage());
        awaitFree(System.nanoTime());
        assertEquals(pid, pidOf(pool, 0), "the worker stopped the sleep and stays");
        assertEquals(1.0, meters.get("analytics.python.timeouts").counter().count());
        assertEquals(0.0, cancellations("stopped") + cancellations("killed"), "a timeout is not a cancellation");
        AnalysisResponse next = engine.stub.withDeadlineAfter(30, TimeUnit.SECONDS).analyze(smallKmeans("after-timeout"));
        assertTrue(next.getSuccess(), next.getErrorMessage());
    }

    @Test
    void droppedConnectionStopsTheComputation() throws Exception {
        start(1);
        long pid = pidOf(pool, 0);
        ManagedChannel ch = NettyChannelBuilder.forAddress("127.0.0.1", engine.server.port()).usePlaintext()
                .maxInboundMessageSize(64 << 20).build();
        Outcome<AnalysisResponse> call = new Outcome<>();
        AnalyticsEngineGrpc.newStub(ch).analyze(longKmeans("km-drop"), call);
        await("the kmeans to run", Duration.ofSeconds(30), () -> count(pool, "busy") == 1);
        long dropped = System.nanoTime();
        ch.shutdownNow(); // closes the TCP connection: the server sees the call end
        printRelease("kmeans (connection dropped)", awaitFree(dropped));
        assertTrue(ch.awaitTermination(10, TimeUnit.SECONDS));
        awaitCancellations("stopped", 1.0);
        assertEquals(pid, pidOf(pool, 0));
        AnalysisResponse next = engine.stub.withDeadlineAfter(30, TimeUnit.SECONDS).analyze(smallKmeans("after-drop"));
        assertTrue(next.getSuccess(), next.getErrorMessage());
    }

    @Test
    void aWorkerThatCannotStopIsKilledAndReplaced() throws Exception {
        start(1, Duration.ofMillis(PythonWorkerPool.CANCEL_STOP_WAIT_MS));
        long pid = pidOf(pool, 0);
        Context.CancellableContext ctx = Context.current().withCancellation();
        Outcome<AnalysisResponse> call = new Outcome<>();
        AnalysisRequest hang = AnalysisRequest.newBuilder().setRequestId("stuck").setAlgorithm("_test_hang")
                .putParams("uncancellable", "true")
                .setOptions(AnalysisOptions.newBuilder().setAllowPython(true).setTimeoutMs(600_000)).build();
        ctx.run(() -> AnalyticsEngineGrpc.newStub(engine.channel).analyze(hang, call));
        await("the hang to run", Duration.ofSeconds(30), () -> count(pool, "busy") == 1);
        // "busy" is the engine's view once the frame is sent: a cancel that reaches the worker before the hang has
        // set SIGIO to ignored still stops it (the worker checks for a cancel right before computing), which
        // would be a "stopped", not the kill this test is about. The kernel says when it is ignored.
        await("the hang to ignore SIGIO", Duration.ofSeconds(30), () -> ignoresSigio(pid));
        long t0 = System.nanoTime();
        ctx.cancel(null);
        assertEquals(Status.Code.CANCELLED, call.code());
        printRelease("uncancellable hang (killed after " + PythonWorkerPool.CANCEL_STOP_WAIT_MS + " ms)", awaitFree(t0));
        awaitCancellations("killed", 1.0);
        awaitCancellations("stopped", 0.0);
        await("the replacement", Duration.ofSeconds(60), () -> count(pool, "ready") == 1);
        assertTrue(pidOf(pool, 0) != pid, "replaced");
        assertEquals("CLOSED", pool.status().get("breaker"));
        AnalysisResponse next = engine.stub.withDeadlineAfter(30, TimeUnit.SECONDS).analyze(smallKmeans("after-kill"));
        assertTrue(next.getSuccess(), next.getErrorMessage());
    }

    @Test
    void cancelledBatchLeavesNoItemRunning() throws Exception {
        start(2);
        List<Long> pids = List.of(pidOf(pool, 0), pidOf(pool, 1));
        BatchAnalysisRequest.Builder batch = BatchAnalysisRequest.newBuilder().setBatchId("b-cancel");
        for (int i = 0; i < 50; i++) {
            batch.addRequests(sleep("item-" + i, 600));
        }
        Context.CancellableContext ctx = Context.current().withCancellation();
        Outcome<AnalysisResponse> call = new Outcome<>();
        ctx.run(() -> AnalyticsEngineGrpc.newStub(engine.channel).batchAnalyze(batch.build(), call));
        await("both workers busy with items", Duration.ofSeconds(30), () -> count(pool, "busy") == 2);
        long t0 = System.nanoTime();
        ctx.cancel(null);
        assertEquals(Status.Code.CANCELLED, call.code());
        printRelease("BatchAnalyze of 50 (client cancel)", awaitFree(t0));
        await("no Python request in flight and none waiting", Duration.ofSeconds(10),
                () -> ((Number) pool.status().get("in_flight")).intValue() == 0
                        && ((Map<?, ?>) pool.status().get("pool")).get("waiting").equals(0));
        assertTrue(call.received.isEmpty(), "nothing answered: " + call.received);
        // the items that had started (batch_concurrency = 8 at most) were cancelled; the rest never started
        await("the started items to be counted", Duration.ofSeconds(5),
                () -> uncheckedRequests("_test_sleep", "CANCELLED") >= 2);
        double cancelled = requests("_test_sleep", "CANCELLED");
        assertTrue(cancelled <= 8, cancelled + " items were started");
        assertEquals(0.0, requests("_test_sleep", "SUCCESS"));
        awaitCancellations("stopped", 2.0);
        assertEquals(pids, List.of(pidOf(pool, 0), pidOf(pool, 1)));
        assertEquals(2, count(pool, "ready"));
    }

    @Test
    void cancelledAnalyzeStreamStopsItsPythonComputation() throws Exception {
        start(1);
        long pid = pidOf(pool, 0);
        Context.CancellableContext ctx = Context.current().withCancellation();
        Outcome<AnalysisResponse> call = new Outcome<>();
        ctx.run(() -> {
            StreamObserver<analytics.engine.proto.StreamChunk> in = AnalyticsEngineGrpc.newStub(engine.channel)
                    .analyzeStream(call);
            in.onNext(analytics.engine.proto.StreamChunk.newBuilder().setRequestId("st").setAlgorithm("_test_sleep")
                    .putParams("seconds", "600").addData(1).build());
            in.onNext(analytics.engine.proto.StreamChunk.newBuilder().addData(2).build());
            in.onCompleted(); // the gathered series goes to the worker now
        });
        await("the streamed request to run", Duration.ofSeconds(30), () -> count(pool, "busy") == 1);
        long t0 = System.nanoTime();
        ctx.cancel(null);
        assertEquals(Status.Code.CANCELLED, call.code());
        printRelease("AnalyzeStream (client cancel)", awaitFree(t0));
        awaitCancellations("stopped", 1.0);
        assertEquals(pid, pidOf(pool, 0));
    }

    @Test
    void hundredStartCancelCyclesUnderLoadLeakNothing() throws Exception {
        start(2);
        List<Long> pids = List.of(pidOf(pool, 0), pidOf(pool, 1));
        AtomicBoolean loading = new AtomicBoolean(true);
        AtomicInteger loadOk = new AtomicInteger();
        Thread load = new Thread(() -> { // steady short requests on both workers meanwhile
            int i = 0;
            while (loading.get()) {
                AnalysisResponse r = engine.stub.withDeadlineAfter(60, TimeUnit.SECONDS).analyze(sleep("load-" + i++, 0.01));
                if (r.getSuccess()) {
                    loadOk.incrementAndGet();
                }
            }
        }, "cancel-test-load");
        load.start();
        Random rnd = new Random(100);
        AnalyticsEngineGrpc.AnalyticsEngineStub async = AnalyticsEngineGrpc.newStub(engine.channel);
        int warmup = 20;
        long threads0 = 0;
        long fds0 = 0;
        List<String> children0 = List.of();
        for (int i = 0; i < warmup + 100; i++) {
            if (i == warmup) {
                threads0 = ManagementFactory.getThreadMXBean().getThreadCount();
                fds0 = openFds();
                children0 = workerProcesses();
            }
            Context.CancellableContext ctx = Context.current().withCancellation();
            Outcome<AnalysisResponse> call = new Outcome<>();
            ctx.run(() -> async.analyze(sleep("cycle", 600), call));
            // cancel at a seeded random moment: some while queued behind the load, some while running
            timer.schedule(() -> ctx.cancel(null), rnd.nextInt(40), TimeUnit.MILLISECONDS);
            assertEquals(Status.Code.CANCELLED, call.code(), "cycle " + i);
        }
        loading.set(false);
        load.join(60_000);
        assertFalse(load.isAlive());
        assertTrue(loadOk.get() > 0);
        await("the pool full and idle", Duration.ofSeconds(20), () -> count(pool, "ready") == 2
                && ((Number) pool.status().get("in_flight")).intValue() == 0
                && ((Map<?, ?>) pool.status().get("pool")).get("idle").equals(2));
        assertEquals(pids, List.of(pidOf(pool, 0), pidOf(pool, 1)), "no worker was killed or leaked");
        List<String> c0 = children0; // the 2 workers, plus the fork-server template when that launcher is used
        await("the same child processes as after the warm-up (none leaked, none lost): " + c0 + " now "
                + workerProcesses(), Duration.ofSeconds(20), () -> workerProcesses().equals(c0));
        awaitCancellations("killed", 0.0);
        // a call cancelled before its handler reached the pool is not a pool cancellation; all others are
        double pooled = cancellations("stopped") + cancellations("queued");
        assertTrue(pooled <= 120 && cancellations("stopped") > 0, "stopped " + cancellations("stopped") + ", queued "
                + cancellations("queued"));
        assertEquals(pooled, requests("_test_sleep", "CANCELLED"));
        long t0 = threads0;
        long f0 = fds0;
        await("threads and file descriptors back to their level after warm-up", Duration.ofSeconds(60),
                () -> ManagementFactory.getThreadMXBean().getThreadCount() <= t0 + 2 && openFds() <= f0 + 2);
        try (var files = Files.list(pool.runtimeDir())) {
            assertEquals(List.of("workers.sock"), files.map(p -> p.getFileName().toString()).toList());
        }
        printRelease("100 cycles (client cancel)", -1);
    }

    /** The JVM's live child processes (pid, executable), sorted: the pool's workers (and fork-server template). */
    private static List<String> workerProcesses() {
        return ProcessHandle.current().descendants().filter(ProcessHandle::isAlive)
                .map(p -> p.pid() + " " + p.info().command().orElse("?")).sorted().toList();
    }

    private static long openFds() {
        try (var s = Files.list(Path.of("/proc/self/fd"))) {
            return s.count();
        } catch (java.io.IOException e) {
            throw new IllegalStateException(e);
        }
    }

    @Test
    void analyzeWithProgressReportsQueuedRunningProgressThenTheResultOfAnalyze() throws Exception {
        start(1);
        Random r = new Random(7);
        int n = 2000;
        AnalysisRequest.Builder b = AnalysisRequest.newBuilder().setRequestId("rf-1").setAlgorithm("random_forest")
                .putParams("n_estimators", "120").addShape(n).addShape(4)
                .setOptions(AnalysisOptions.newBuilder().setAllowPython(true).setTimeoutMs(600_000).setIncludeMetadata(true));
        for (int i = 0; i < n; i++) {
            double x0 = r.nextGaussian();
            double x1 = r.nextGaussian();
            b.addData(x0).addData(x1).addData(r.nextGaussian()).addData(r.nextGaussian());
            b.addTarget(2 * x0 - x1 + 0.1 * r.nextGaussian());
        }
        AnalysisRequest rf = b.build();
        // occupy the only worker so that the request queues first
        Context.CancellableContext blocker = Context.current().withCancellation();
        Outcome<AnalysisResponse> blocked = new Outcome<>();
        blocker.run(() -> AnalyticsEngineGrpc.newStub(engine.channel).analyze(sleep("blocker", 600), blocked));
        await("the blocker to run", Duration.ofSeconds(30), () -> count(pool, "busy") == 1);
        Outcome<ProgressUpdate> watch = new Outcome<>();
        AnalyticsEngineGrpc.newStub(engine.channel).analyzeWithProgress(rf, watch);
        await("a queued update", Duration.ofSeconds(10), () -> !watch.received.isEmpty());
        blocker.cancel(null);
        assertEquals(Status.Code.OK, watch.code());
        List<ProgressUpdate> ups = watch.received;
        List<String> kinds = ups.stream().map(u -> u.getUpdateCase().name()).toList();
        System.out.println("PROGRESS updates: " + kinds);
        assertEquals(ProgressUpdate.UpdateCase.QUEUED, ups.get(0).getUpdateCase());
        assertEquals(1, ups.get(0).getQueued().getPosition());
        int firstRunning = kinds.indexOf("RUNNING");
        assertTrue(firstRunning > 0, kinds.toString());
        assertTrue(kinds.subList(0, firstRunning).stream().allMatch("QUEUED"::equals), kinds.toString());
        assertEquals(0, ups.get(firstRunning).getRunning().getWorkerId());
        List<ProgressUpdate> progress = ups.subList(firstRunning + 1, ups.size() - 1);
        assertTrue(progress.size() >= 2, kinds.toString());
        double last = -1;
        for (ProgressUpdate u : progress) {
            assertEquals(ProgressUpdate.UpdateCase.PROGRESS, u.getUpdateCase(), kinds.toString());
            assertTrue(u.getProgress().getFraction() >= last, kinds.toString());
            last = u.getProgress().getFraction();
        }
        assertEquals(1.0, last);
        assertEquals("120 of 120 trees", progress.get(progress.size() - 1).getProgress().getDetail());
        long elapsed = -1;
        for (ProgressUpdate u : ups) {
            assertEquals("rf-1", u.getRequestId());
            assertTrue(u.getElapsedMs() >= elapsed);
            elapsed = u.getElapsedMs();
        }
        ProgressUpdate end = ups.get(ups.size() - 1);
        assertEquals(ProgressUpdate.UpdateCase.RESULT, end.getUpdateCase());
        AnalysisResponse watched = end.getResult();
        assertTrue(watched.getSuccess(), watched.getErrorMessage());
        AnalysisResponse plain = engine.stub.withDeadlineAfter(120, TimeUnit.SECONDS).analyze(rf);
        assertTrue(plain.getSuccess(), plain.getErrorMessage());
        assertEquals(plain.getResultJson(), watched.getResultJson());
        assertEquals(plain.getRequestId(), watched.getRequestId());
        assertEquals(plain.getMetadata().getImplementation(), watched.getMetadata().getImplementation());
    }

    @Test
    void cancellingAWatchedForestStopsIt() throws Exception {
        start(1);
        long pid = pidOf(pool, 0);
        Random r = new Random(8);
        AnalysisRequest.Builder b = AnalysisRequest.newBuilder().setRequestId("rf-cancel").setAlgorithm("random_forest")
                .putParams("n_estimators", "5000")
                .setOptions(AnalysisOptions.newBuilder().setAllowPython(true).setTimeoutMs(600_000));
        for (int i = 0; i < 3000; i++) {
            b.addData(r.nextGaussian());
        }
        Context.CancellableContext ctx = Context.current().withCancellation();
        Outcome<ProgressUpdate> watch = new Outcome<>();
        ctx.run(() -> AnalyticsEngineGrpc.newStub(engine.channel).analyzeWithProgress(b.build(), watch));
        await("a progress update", Duration.ofSeconds(60), () -> watch.received.stream()
                .anyMatch(u -> u.getUpdateCase() == ProgressUpdate.UpdateCase.PROGRESS));
        long t0 = System.nanoTime();
        ctx.cancel(null);
        assertEquals(Status.Code.CANCELLED, watch.code());
        printRelease("AnalyzeWithProgress random_forest (client cancel)", awaitFree(t0));
        awaitCancellations("stopped", 1.0);
        assertEquals(pid, pidOf(pool, 0));
        assertTrue(watch.received.stream().noneMatch(u -> u.getUpdateCase() == ProgressUpdate.UpdateCase.RESULT));
    }

    @Test
    void analyzeWithProgressOfANativeStatisticIsJustTheResult() throws Exception {
        start(1);
        AnalysisRequest req = AnalysisRequest.newBuilder().setRequestId("m").setAlgorithm("mean")
                .addAllData(List.of(1.0, 2.0, 3.0)).build();
        List<ProgressUpdate> ups = new ArrayList<>();
        engine.stub.analyzeWithProgress(req).forEachRemaining(ups::add);
        assertEquals(1, ups.size());
        assertEquals("2.0", ups.get(0).getResult().getResultJson());
        assertEquals(engine.stub.analyze(req).getResultJson(), ups.get(0).getResult().getResultJson());
    }
}
