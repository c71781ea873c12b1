package analytics.engine.server;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import analytics.engine.proto.AnalysisResponse;
import analytics.engine.proto.ProgressUpdate;
import io.grpc.stub.ServerCallStreamObserver;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The rate bound and order rules of AnalyzeWithProgress's updates, without a server. */
class ProgressStreamTest {

    /** Records what the stream sends. */
    static final class Recorder extends ServerCallStreamObserver<ProgressUpdate> {
        final List<ProgressUpdate> sent = new ArrayList<>();
        boolean completed;
        boolean cancelled;

        @Override public boolean isCancelled() { return cancelled; }
        @Override public void setOnCancelHandler(Runnable r) { }
        @Override public void setCompression(String c) { }
        @Override public boolean isReady() { return true; }
        @Override public void setOnReadyHandler(Runnable r) { }
        @Override public void disableAutoInboundFlowControl() { }
        @Override public void request(int n) { }
        @Override public void setMessageCompression(boolean e) { }
        @Override public void onNext(ProgressUpdate u) { sent.add(u); }
        @Override public void onError(Throwable t) { throw new AssertionError(t); }
        @Override public void onCompleted() { completed = true; }
    }

    @Test
    void aFloodOfProgressIsThinnedToTheBoundAndTheLastAlwaysGoesOut() {
        Recorder out = new Recorder();
        ProgressStream p = new ProgressStream(out, "r");
        p.running(3);
        long t0 = System.nanoTime();
        for (int i = 1; i <= 100_000; i++) {
            p.progress(i / 100_000.0, i + " of 100000");
        }
        long elapsedMs = (System.nanoTime() - t0) / 1_000_000;
        p.finish(AnalysisResponse.newBuilder().setRequestId("r").setSuccess(true).build());
        List<ProgressUpdate> progress = out.sent.stream()
                .filter(u -> u.getUpdateCase() == ProgressUpdate.UpdateCase.PROGRESS).toList();
        assertTrue(progress.size() <= 2 + elapsedMs / ProgressStream.MIN_PROGRESS_INTERVAL_MS,
                progress.size() + " progress updates in " + elapsedMs + " ms");
        assertEquals(1.0, progress.get(progress.size() - 1).getProgress().getFraction());
        assertEquals(ProgressUpdate.UpdateCase.RUNNING, out.sent.get(0).getUpdateCase());
        assertEquals(3, out.sent.get(0).getRunning().getWorkerId());
        assertEquals(ProgressUpdate.UpdateCase.RESULT, out.sent.get(out.sent.size() - 1).getUpdateCase());
        assertTrue(out.completed);
        out.sent.forEach(u -> assertEquals("r", u.getRequestId()));
    }

    @Test
    void fractionsNeverGoBackAndNothingFollowsTheResult() {
        Recorder out = new Recorder();
        ProgressStream p = new ProgressStream(out, "r");
        p.queued(2);
        p.queued(1);
        p.running(0);
        p.progress(0.5, "half");
        p.progress(0.25, "late frame of an earlier point"); // dropped: lower than the last
        p.finish(AnalysisResponse.getDefaultInstance());
        p.progress(1.0, "after the end");
        p.running(1);
        List<ProgressUpdate.UpdateCase> kinds = out.sent.stream().map(ProgressUpdate::getUpdateCase).toList();
        assertEquals(List.of(ProgressUpdate.UpdateCase.QUEUED, ProgressUpdate.UpdateCase.QUEUED,
                ProgressUpdate.UpdateCase.RUNNING, ProgressUpdate.UpdateCase.PROGRESS,
                ProgressUpdate.UpdateCase.RESULT), kinds);
        assertEquals(2, out.sent.get(0).getQueued().getPosition());
    }

    @Test
    void aCancelledCallGetsNothing() {
        Recorder out = new Recorder();
        out.cancelled = true;
        ProgressStream p = new ProgressStream(out, "r");
        p.running(0);
        p.finish(AnalysisResponse.getDefaultInstance());
        assertTrue(out.sent.isEmpty());
        assertTrue(!out.completed);
    }
}
