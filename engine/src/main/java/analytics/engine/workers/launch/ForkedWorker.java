package analytics.engine.workers.launch;

import java.util.Optional;
import java.util.concurrent.CompletableFuture;

/**
 * A worker forked by a fork-server template: not this JVM's child, so its exit is reported by the template
 * (or, once the template is gone, watched by pid), and it is signalled by pid only while it has not exited.
 */
final class ForkedWorker implements LaunchedProcess {
    final long pid;
    final TemplateProcess template;
    final CompletableFuture<String> exited = new CompletableFuture<>();
    volatile LaunchSpec.OutputSink output;

    /** Looked up once: ProcessHandle.of reads /proc/PID/stat, and isAlive() is asked on every borrow and return. */
    final Optional<ProcessHandle> handle;

    ForkedWorker(long pid, TemplateProcess template) {
        this.pid = pid;
        this.template = template;
        this.handle = ProcessHandle.of(pid);
    }

    void reportExit(String description) {
        exited.complete(description);
    }

    @Override
    public long pid() {
        return pid;
    }

    @Override
    public CompletableFuture<String> exited() {
        return exited;
    }

    @Override
    public boolean isAlive() {
        if (exited.isDone()) {
            return false;
        }
        // While its template runs (retired or not), the template reaps this worker and reports the exit, which
        // completes `exited`: no /proc read on every borrow and return (~8 µs each, on the request path; a
        // killed worker is a zombie that /proc still shows until that reaping anyway). Once the template is
        // gone, /proc tells; the cached handle's isAlive() also checks the start time: a reused pid reads as dead.
        if (template != null && template.process.isAlive()) {
            return true;
        }
        return handle.map(ProcessHandle::isAlive).orElse(false);
    }

    @Override
    public void terminate() {
        if (!exited.isDone()) { // never signal a pid that may have been reused
            ProcessHandle.of(pid).ifPresent(ProcessHandle::destroy);
        }
    }

    @Override
    public void kill() {
        if (!exited.isDone()) {
            ProcessHandle.of(pid).ifPresent(ProcessHandle::destroyForcibly);
        }
    }
}
