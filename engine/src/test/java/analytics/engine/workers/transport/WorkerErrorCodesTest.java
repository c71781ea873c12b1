package analytics.engine.workers.transport;

import static org.junit.jupiter.api.Assertions.assertEquals;

import analytics.engine.workers.WorkerTestSupport;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** The worker declares its error codes (core.ERROR_CODES); the engine maps exactly those. */
class WorkerErrorCodesTest {

    @Test
    void theEngineMapsEveryCodeTheWorkerDeclares() throws Exception {
        Process p = new ProcessBuilder(WorkerTestSupport.python().toString(), "-c",
                "import sys; sys.path.insert(0, '.'); from analytics_worker.core import ERROR_CODES; print(' '.join(ERROR_CODES))")
                .directory(WorkerTestSupport.repoRoot().resolve("py-worker").toFile())
                .redirectError(ProcessBuilder.Redirect.INHERIT).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
        assertEquals(true, p.waitFor(60, TimeUnit.SECONDS) && p.exitValue() == 0, out);
        assertEquals(List.of(out.split(" ")).stream().sorted().toList(),
                Arrays.stream(WorkerMessage.WorkerError.values()).map(Enum::name).sorted().toList());
    }

    @Test
    void aResponseFrameBecomesATypedResponse() {
        WorkerMessage m = WorkerMessage.of(Map.of("type", "response", "id", "r1", "ok", false,
                "error_code", "UNKNOWN_ALGORITHM", "error_message", "nope", "timings", Map.of("compute_us", 12L)));
        assertEquals(new WorkerMessage.Response("r1", false, null, WorkerMessage.WorkerError.UNKNOWN_ALGORITHM, "nope", 12), m);
        assertEquals(WorkerMessage.WorkerError.INTERNAL,
                ((WorkerMessage.Response) WorkerMessage.of(Map.of("type", "response", "id", "r", "error_code", "??"))).error());
        assertEquals(new WorkerMessage.Pong("p", 4096), WorkerMessage.of(Map.of("type", "pong", "id", "p", "rss_bytes", 4096L)));
        assertEquals(new WorkerMessage.Unexpected("request"), WorkerMessage.of(Map.of("type", "request")));
    }
}
