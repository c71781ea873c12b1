package analytics.engine.workers;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import analytics.engine.workers.WorkerHandle.RetireReason;
import analytics.engine.workers.WorkerHandle.State;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.Test;

/** The lifecycle table in {@link WorkerHandle}'s javadoc, transition by transition, and its "exactly one wins". */
class WorkerHandleStateTest {

    private static WorkerHandle handle() {
        return new WorkerHandle(0, 1, "token", 0);
    }

    @Test
    void startsStartingAndBecomesReadyOnce() {
        WorkerHandle h = handle();
        assertEquals(State.STARTING, h.state());
        assertEquals(0, h.readyNanos());
        assertTrue(h.becameReady());
        assertEquals(State.READY, h.state());
        assertTrue(h.readyNanos() != 0);
        assertFalse(h.becameReady(), "READY → READY is not a transition");
        assertEquals(State.READY, h.state());
    }

    @Test
    void retireWinsOnceAndKeepsTheFirstReason() {
        WorkerHandle h = handle();
        h.becameReady();
        assertFalse(h.isRetiring());
        assertFalse(h.outOfService.isDone());
        assertTrue(h.beginRetire(RetireReason.RECYCLE));
        assertEquals(State.RETIRING, h.state());
        assertTrue(h.isRetiring());
        assertTrue(h.outOfService.isDone());
        assertFalse(h.beginRetire(RetireReason.TIMEOUT), "a second retire loses");
        assertEquals(RetireReason.RECYCLE, h.retireReason());
        h.noteRetireReason(RetireReason.BROKEN);
        assertEquals(RetireReason.RECYCLE, h.retireReason(), "a noted reason does not overwrite the retire's");
    }

    @Test
    void aStartingWorkerCanRetireAndThenCannotBecomeReady() {
        WorkerHandle h = handle();
        assertTrue(h.beginRetire(RetireReason.START_FAILED));
        assertFalse(h.becameReady(), "RETIRING → READY is illegal (a hello after the start-up timeout)");
        assertEquals(State.RETIRING, h.state());
    }

    @Test
    void endedIsFinalAndReportsTheStateItLeftOnce() {
        WorkerHandle h = handle();
        h.becameReady();
        assertEquals(State.READY, h.ended("exit status 1"));
        assertEquals(State.DEAD, h.state());
        assertTrue(h.hasEnded());
        assertFalse(h.isRetiring(), "an end without retire is a crash");
        assertTrue(h.outOfService.isDone());
        assertNull(h.ended("closed its connection"), "only the first end runs the end logic");
        assertEquals("exit status 1", h.endDescription());
        assertFalse(h.beginRetire(RetireReason.BROKEN), "DEAD → RETIRING is illegal");
        assertFalse(h.becameReady(), "DEAD → READY is illegal");
        assertNull(h.retireReason());
    }

    @Test
    void aRetiredWorkerThatEndsStaysRetiringAndKeepsItsCause() {
        WorkerHandle h = handle();
        h.becameReady();
        h.noteEndCause("did not answer in time");
        assertTrue(h.beginRetire(RetireReason.TIMEOUT));
        assertEquals(State.RETIRING, h.ended("killed by SIGKILL"));
        assertTrue(h.isRetiring(), "its end was expected: no crash accounting");
        assertEquals("did not answer in time", h.endDescription(), "the cause given first wins over the exit status");
    }

    @Test
    void aProtocolErrorNamesTheEndOnlyWithoutAnEarlierCause() {
        WorkerHandle h = handle();
        h.noteEndCauseIfAbsent("protocol error: x");
        h.noteEndCauseIfAbsent("protocol error: y");
        assertEquals("protocol error: x", h.endDescription());
        WorkerHandle m = handle();
        assertTrue(m.requestRetryable());
        m.noteStoppedForItsRequest("was stopped: its memory use exceeded the limit");
        assertFalse(m.requestRetryable());
        m.noteEndCauseIfAbsent("protocol error: z");
        assertEquals("was stopped: its memory use exceeded the limit", m.endDescription());
    }

    @Test
    void replacementIsClaimedOnceAndHandedBackOnRevert() {
        WorkerHandle old = handle();
        WorkerHandle failed = new WorkerHandle(0, 2, "token2", 0);
        assertTrue(old.claimReplacement());
        assertFalse(old.claimReplacement());
        failed.handBackTo(old);
        assertFalse(failed.claimReplacement(), "a failed reload replacement is never replaced");
        assertTrue(old.claimReplacement(), "the old worker's successor may be started again");
    }

    @Test
    void reloadRequestTakesItOutOfServiceWithoutAStateChange() {
        WorkerHandle h = handle();
        h.becameReady();
        assertFalse(h.retireRequested());
        h.requestRetireOnReturn();
        assertTrue(h.retireRequested());
        assertEquals(State.READY, h.state());
        assertFalse(h.inService());
    }

    /** Two threads race beginRetire (e.g. deadline kill and cancel) from one latch: exactly one wins, every round. */
    @Test
    void exactlyOneOfConcurrentRetiresWins() throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(2);
        try {
            for (int round = 0; round < 200; round++) {
                WorkerHandle h = handle();
                h.becameReady();
                CountDownLatch go = new CountDownLatch(1);
                List<Future<Boolean>> results = new ArrayList<>();
                for (RetireReason r : new RetireReason[] {RetireReason.TIMEOUT, RetireReason.CANCELLED}) {
                    Callable<Boolean> c = () -> {
                        go.await();
                        return h.beginRetire(r);
                    };
                    results.add(pool.submit(c));
                }
                go.countDown();
                boolean a = results.get(0).get();
                boolean b = results.get(1).get();
                assertTrue(a ^ b, "round " + round + ": exactly one beginRetire wins (" + a + ", " + b + ")");
                assertEquals(a ? RetireReason.TIMEOUT : RetireReason.CANCELLED, h.retireReason(),
                        "the winner's reason is kept");
            }
        } finally {
            pool.shutdownNow();
        }
    }

    /** A retire racing the process's end: whichever comes first, ended() runs its logic once and knows if it was expected. */
    @Test
    void retireRacingEndIsConsistent() throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(2);
        try {
            for (int round = 0; round < 200; round++) {
                WorkerHandle h = handle();
                h.becameReady();
                CountDownLatch go = new CountDownLatch(1);
                Future<Boolean> retire = pool.submit(() -> {
                    go.await();
                    return h.beginRetire(RetireReason.BROKEN);
                });
                Future<State> end = pool.submit(() -> {
                    go.await();
                    return h.ended("exit status 9");
                });
                go.countDown();
                boolean retired = retire.get();
                State left = end.get();
                assertEquals(State.DEAD, h.state());
                assertEquals(retired, left == State.RETIRING, "round " + round + ": ended() saw the retire iff it won first");
                assertEquals(retired, h.isRetiring());
            }
        } finally {
            pool.shutdownNow();
        }
    }
}
