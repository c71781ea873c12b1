package analytics.engine.workers;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Collection;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Busy workers are not pinged, so a request that allocates without bound is watched from here: every 250 ms the
 * RSS of each busy worker is read from /proc/PID/statm; above the hard limit (2 × maxRssBytes) the worker is
 * stopped (SIGTERM → grace → SIGKILL) and replaced, and its request fails with WORKER_FAILED (not retried).
 */
final class MemoryWatchdog {

    private static final Logger log = LoggerFactory.getLogger(MemoryWatchdog.class);
    private static final long PAGE_SIZE = 4096;

    private MemoryWatchdog() {
    }

    /** Starts watching {@code live} on {@code scheduler}; {@code stop} retires a worker over the limit. No-op without a limit. */
    static void start(long maxRssBytes, Collection<WorkerHandle> live, ScheduledExecutorService scheduler,
                      Consumer<WorkerHandle> stop) {
        if (maxRssBytes <= 0) {
            return;
        }
        long hardLimit = maxRssBytes > Long.MAX_VALUE / 2 ? Long.MAX_VALUE : 2 * maxRssBytes;
        scheduler.scheduleWithFixedDelay(() -> {
            for (WorkerHandle h : live) {
                if (!h.hasRequestInFlight() || h.hasEnded() || h.isRetiring() || h.pid <= 0) {
                    continue;
                }
                long rss = readRss(h.pid);
                if (rss > hardLimit) {
                    h.rssBytes = rss;
                    h.noteStoppedForItsRequest("was stopped: its memory use (" + mib(rss) + " MiB) exceeded the limit of "
                            + mib(hardLimit) + " MiB");
                    log.warn("worker[{}] pid {} {}", h.slot, h.pid, h.endDescription());
                    stop.accept(h);
                }
            }
        }, 250, 250, TimeUnit.MILLISECONDS);
    }

    private static long mib(long bytes) {
        return bytes / (1024 * 1024);
    }

    static long readRss(long pid) {
        try {
            String statm = Files.readString(Path.of("/proc/" + pid + "/statm"));
            String[] f = statm.trim().split(" ");
            return Long.parseLong(f[1]) * PAGE_SIZE;
        } catch (IOException | RuntimeException e) {
            return -1;
        }
    }
}
