package analytics.engine.server;

import analytics.engine.proto.AnalysisResponse;
import analytics.engine.proto.FractionUpdate;
import analytics.engine.proto.ProgressUpdate;
import analytics.engine.proto.QueuedUpdate;
import analytics.engine.proto.RunningUpdate;
import analytics.engine.api.PythonBackend;
import io.grpc.stub.ServerCallStreamObserver;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One AnalyzeWithProgress call: turns the pool's events into ProgressUpdate messages, in order (queued,
 * running, progress, result), at a bounded rate, and ends the stream with the result. The events come
 * from several engine threads; the observer is only touched under this object's lock.
 */
final class ProgressStream implements PythonBackend.Listener {

    private static final Logger LOG = LoggerFactory.getLogger(ProgressStream.class);

    /**
     * Progress updates closer together than this are dropped (the last one, fraction 1, always goes out).
     * Queue positions change at most every 200 ms (the pool's borrow slice); running is once per attempt.
     * So a client gets at most about 10 updates per second.
     */
    static final long MIN_PROGRESS_INTERVAL_MS = 100;

    private final ServerCallStreamObserver<ProgressUpdate> out;
    private final String requestId;
    private final long startNanos = System.nanoTime();
    private boolean finished;
    private long lastProgressNanos;
    private double lastFraction = -1;

    ProgressStream(ServerCallStreamObserver<ProgressUpdate> out, String requestId) {
        this.out = out;
        this.requestId = requestId;
    }

    @Override
    public synchronized void queued(int position) {
        send(ProgressUpdate.newBuilder().setQueued(QueuedUpdate.newBuilder().setPosition(position)));
    }

    @Override
    public synchronized void running(int workerId) {
        lastFraction = -1; // a retry on another worker starts over
        send(ProgressUpdate.newBuilder().setRunning(RunningUpdate.newBuilder().setWorkerId(workerId)));
    }

    @Override
    public synchronized void progress(double fraction, String detail) {
        long now = System.nanoTime();
        if (fraction < lastFraction
                || (fraction < 1.0 && now - lastProgressNanos < TimeUnit.MILLISECONDS.toNanos(MIN_PROGRESS_INTERVAL_MS))) {
            return;
        }
        lastFraction = fraction;
        lastProgressNanos = now;
        send(ProgressUpdate.newBuilder().setProgress(FractionUpdate.newBuilder().setFraction(fraction).setDetail(detail)));
    }

    /** The last update: the response Analyze would have returned; ends the stream. */
    synchronized void finish(AnalysisResponse response) {
        send(ProgressUpdate.newBuilder().setResult(response));
        finished = true;
        if (!out.isCancelled()) {
            try {
                out.onCompleted();
            } catch (RuntimeException e) {
                LOG.debug("request {}: client went away before the end of the stream ({})", requestId, e.toString());
            }
        }
    }

    private void send(ProgressUpdate.Builder b) {
        if (finished || out.isCancelled()) {
            return;
        }
        try {
            out.onNext(b.setRequestId(requestId)
                    .setElapsedMs(TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - startNanos)).build());
        } catch (RuntimeException e) {
            LOG.debug("request {}: client went away ({})", requestId, e.toString());
        }
    }
}
