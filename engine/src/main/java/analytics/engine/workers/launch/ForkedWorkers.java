package analytics.engine.workers.launch;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The workers forked from any template of one launcher, by pid: where a worker's tagged output line or exit
 * report goes. A forked child may write (or even exit) before the template's "forked" answer has been
 * processed; such lines and exits are held by pid until {@link #register} hands them over.
 */
final class ForkedWorkers {
    private final Map<Long, ForkedWorker> children = new ConcurrentHashMap<>();
    /** Lines of a pid whose "forked" answer has not been processed yet (the child may write first). */
    private final Map<Long, List<String[]>> early = new ConcurrentHashMap<>();
    /** Exit reports of a pid whose "forked" answer has not been processed yet (guarded by {@link #early}). */
    private final Map<Long, String> earlyExits = new ConcurrentHashMap<>();

    /** A fork was answered: from now on the worker's lines go to its sink; held lines and exit are delivered. */
    void register(ForkedWorker f, LaunchSpec.OutputSink output) {
        f.output = output;
        List<String[]> before;
        String exitedEarly;
        synchronized (early) {
            children.put(f.pid, f);
            before = early.remove(f.pid);
            exitedEarly = earlyExits.remove(f.pid);
        }
        f.exited.whenComplete((d, e) -> children.remove(f.pid));
        if (before != null) {
            before.forEach(l -> output.line(l[0], l[1]));
        }
        if (exitedEarly != null) {
            f.reportExit(exitedEarly);
        }
    }

    /** One output line of worker {@code pid} (held, at most 100, while the pid is not registered yet). */
    void deliver(long pid, String stream, String text) {
        ForkedWorker f = children.get(pid);
        LaunchSpec.OutputSink sink = f == null ? null : f.output;
        if (sink == null) {
            synchronized (early) {
                f = children.get(pid);
                sink = f == null ? null : f.output;
                if (sink == null) {
                    List<String[]> buf = early.computeIfAbsent(pid, k -> new ArrayList<>());
                    if (buf.size() < 100) {
                        buf.add(new String[] {stream, text});
                    }
                    return;
                }
            }
        }
        sink.line(stream, text);
    }

    /** The template reaped worker {@code pid} (held while the pid is not registered yet). */
    void exited(long pid, String status) {
        ForkedWorker f;
        synchronized (early) {
            f = children.get(pid);
            if (f == null) {
                earlyExits.put(pid, status);
            }
        }
        if (f != null) {
            f.reportExit(status);
        }
    }

    /**
     * Template {@code t} ended: its running workers were reparented to init, so their status is no longer ours
     * to learn; their end still is (watched by pid).
     */
    void orphaned(TemplateProcess t) {
        for (ForkedWorker f : children.values()) {
            if (f.template == t && !f.exited.isDone()) {
                ProcessHandle.of(f.pid).ifPresentOrElse(
                        ph -> ph.onExit().thenRun(() -> f.reportExit("ended (status unknown: its fork-server template had exited)")),
                        () -> f.reportExit("ended (status unknown: its fork-server template had exited)"));
            }
        }
    }
}
