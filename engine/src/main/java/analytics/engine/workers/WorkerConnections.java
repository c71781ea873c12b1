package analytics.engine.workers;

import analytics.engine.workers.WorkerHandle.RetireReason;
import analytics.engine.workers.transport.WorkerMessage;
import analytics.engine.workers.transport.WorkerMessage.Hello;
import analytics.engine.workers.transport.WorkerSocketServer;
import analytics.engine.workers.transport.WorkerSocketServer.Connection;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The worker socket's events: the hello handshake that ties a connection to the worker the supervisor spawned
 * (by its one-time token, protocol version checked), then every later frame handed to that worker's
 * {@link WorkerChannel}, which matches it to what it sent. A closed connection or a protocol error is reported
 * to the supervisor as the worker's end.
 */
final class WorkerConnections implements WorkerSocketServer.Listener {

    static final int PROTOCOL_VERSION = 1;
    private static final Logger log = LoggerFactory.getLogger(WorkerConnections.class);

    private final WorkerSupervisor supervisor;

    WorkerConnections(WorkerSupervisor supervisor) {
        this.supervisor = supervisor;
    }

    @Override
    public void onMessage(Connection conn, Map<String, Object> frame) {
        WorkerMessage msg = WorkerMessage.of(frame);
        WorkerHandle h = (WorkerHandle) conn.attachment;
        if (h == null) {
            onHello(conn, msg);
            return;
        }
        // after the hello, every frame answers something the worker's channel sent: it matches them
        String violation = h.channel.deliver(msg);
        if (violation != null) {
            onProtocolError(conn, violation);
            conn.close();
        }
    }

    private void onHello(Connection conn, WorkerMessage msg) {
        WorkerHandle h = msg instanceof Hello hello && hello.token() != null ? supervisor.claimToken(hello.token()) : null;
        if (h == null) {
            log.warn("dropping a worker connection whose first frame is not a hello with a token we issued ({})",
                    msg.getClass().getSimpleName());
            conn.close();
            return;
        }
        Hello hello = (Hello) msg;
        if (hello.protocol() != PROTOCOL_VERSION) {
            String why = "speaks worker protocol " + (hello.protocol() < 0 ? "null" : hello.protocol())
                    + ", the engine speaks " + PROTOCOL_VERSION;
            log.error("worker[{}] pid {} {}; stopping it", h.slot, h.pid, why);
            conn.close();
            h.noteEndCause(why);
            supervisor.retire(h, RetireReason.START_FAILED);
            return;
        }
        if (hello.pid() >= 0 && h.pid <= 0) {
            // A forked worker can say hello before its launcher has learnt its pid from the template.
            h.pid = hello.pid();
        } else if (hello.pid() >= 0 && hello.pid() != h.pid) {
            log.warn("worker[{}] hello reports pid {} but we spawned pid {}", h.slot, hello.pid(), h.pid);
        }
        h.attach(new WorkerChannel(h.name(), conn), hello.versions(), hello.algorithms(), hello.features());
        conn.attachment = h;
        if (supervisor.isClosing() || !h.becameReady()) {
            conn.close();
            return;
        }
        supervisor.ready(h);
    }

    @Override
    public void onClosed(Connection conn) {
        WorkerHandle h = (WorkerHandle) conn.attachment;
        if (h == null) {
            return;
        }
        // Prefer the process's own exit status in the description: give it a moment to be reaped. A forked worker
        // can say hello (and hang up) before its launcher returned the process: wait for that first.
        h.launched.thenRun(() -> h.process.exited().completeOnTimeout("closed its connection", 200, TimeUnit.MILLISECONDS)
                .thenAccept(d -> supervisor.processEnded(h, d)));
    }

    @Override
    public void onProtocolError(Connection conn, String description) {
        WorkerHandle h = (WorkerHandle) conn.attachment;
        log.error("protocol error on {}: {}; closing the connection",
                h == null ? "an unidentified worker connection" : "worker[" + h.slot + "] pid " + h.pid, description);
        if (h != null) {
            h.noteEndCauseIfAbsent("protocol error: " + description);
        }
    }
}
