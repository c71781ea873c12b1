package analytics.engine.workers.launch;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * A forked child may write, and even exit, before the template's "forked" answer is processed: its lines and
 * exit report must reach it once it is registered, in order, and nothing is lost or delivered twice.
 */
class ForkedWorkersTest {

    // a pid that exists (ProcessHandle.of finds it); the test never signals it
    private static final long PID = ProcessHandle.current().pid();

    @Test
    void linesAndExitBeforeTheForkAnswerAreHandedOverOnRegister() {
        ForkedWorkers workers = new ForkedWorkers();
        workers.deliver(PID, "stderr", "early 1");
        workers.deliver(PID, "stdout", "early 2");
        workers.exited(PID, "exited with status 3");
        List<String> got = new ArrayList<>();
        ForkedWorker f = new ForkedWorker(PID, null);
        workers.register(f, (stream, line) -> got.add(stream + ":" + line));
        assertEquals(List.of("stderr:early 1", "stdout:early 2"), got);
        assertEquals("exited with status 3", f.exited().getNow(null));
        assertFalse(f.isAlive(), "an exited worker reads as dead even while its pid exists");
    }

    @Test
    void afterRegisterLinesGoStraightToTheSinkAndTheExitEndsTheWorker() {
        ForkedWorkers workers = new ForkedWorkers();
        List<String> got = new ArrayList<>();
        ForkedWorker f = new ForkedWorker(PID, null);
        workers.register(f, (stream, line) -> got.add(line));
        assertTrue(f.isAlive());
        workers.deliver(PID, "stdout", "hello");
        assertEquals(List.of("hello"), got);
        workers.exited(PID, "was killed by signal 9");
        assertEquals("was killed by signal 9", f.exited().getNow(null));
        // the pid is forgotten: a later line of a reused pid is held for its own registration, not given to f
        workers.deliver(PID, "stdout", "someone else");
        assertEquals(List.of("hello"), got);
    }
}
