package analytics.engine.workers;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.netty.channel.EventLoop;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.epoll.EpollEventLoopGroup;
import io.netty.util.concurrent.DefaultThreadFactory;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * {@link DeadlineTimer#schedule}: on a shared event loop the timer is that loop's (no wake-up of the
 * deadline thread per request), yet the deadline's work still runs on the deadline thread, never early.
 */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class DeadlineTimerTest {

    private final EventLoopGroup loops = new EpollEventLoopGroup(2, new DefaultThreadFactory("dl-io", true));
    private final ScheduledThreadPoolExecutor deadlines = new ScheduledThreadPoolExecutor(1,
            new DefaultThreadFactory("dl-deadline", true));

    @AfterEach
    void stop() {
        deadlines.shutdownNow();
        loops.shutdownGracefully(0, 1, TimeUnit.SECONDS).awaitUninterruptibly(5, TimeUnit.SECONDS);
    }

    private record Fired(String thread, long afterNanos) {
    }

    /** Schedules from {@code loop} (null: from this thread); the future completes when the deadline work runs. */
    private CompletableFuture<Fired> schedule(EventLoop loop, long ms, ScheduledFuture<?>[] task) throws Exception {
        CompletableFuture<Fired> fired = new CompletableFuture<>();
        Runnable at = () -> {
            long t0 = System.nanoTime();
            task[0] = DeadlineTimer.schedule(loops, deadlines,
                    () -> fired.complete(new Fired(Thread.currentThread().getName(), System.nanoTime() - t0)), ms);
        };
        if (loop == null) {
            at.run();
        } else {
            loop.submit(at).get(5, TimeUnit.SECONDS);
        }
        return fired;
    }

    @Test
    void onALoopTheLoopTimesItAndTheDeadlineThreadRunsIt() throws Exception {
        ScheduledFuture<?>[] task = new ScheduledFuture<?>[1];
        CompletableFuture<Fired> fired = schedule(loops.next(), 40, task);
        assertTrue(task[0] instanceof io.netty.util.concurrent.ScheduledFuture, "a loop timer: " + task[0]);
        assertEquals(0, deadlines.getQueue().size(), "nothing queued on the deadline thread");
        Fired f = fired.get(5, TimeUnit.SECONDS);
        assertTrue(f.thread().startsWith("dl-deadline"), "ran on " + f.thread());
        assertTrue(f.afterNanos() >= TimeUnit.MILLISECONDS.toNanos(40), "fired early: " + f.afterNanos() + " ns");
    }

    @Test
    void offTheLoopsTheDeadlineThreadTimesIt() throws Exception {
        ScheduledFuture<?>[] task = new ScheduledFuture<?>[1];
        CompletableFuture<Fired> fired = schedule(null, 30, task);
        assertFalse(task[0] instanceof io.netty.util.concurrent.ScheduledFuture, "the executor's timer: " + task[0]);
        Fired f = fired.get(5, TimeUnit.SECONDS);
        assertTrue(f.thread().startsWith("dl-deadline"), "ran on " + f.thread());
        assertTrue(f.afterNanos() >= TimeUnit.MILLISECONDS.toNanos(30), "fired early: " + f.afterNanos() + " ns");
    }

    @Test
    void cancelledOnItsLoopItNeverRuns() throws Exception {
        EventLoop loop = loops.next();
        ScheduledFuture<?>[] task = new ScheduledFuture<?>[1];
        CompletableFuture<Fired> cancelled = schedule(loop, 20, task);
        loop.submit(() -> task[0].cancel(false)).get(5, TimeUnit.SECONDS);
        // a later deadline on the same loop and deadline thread: once it ran, the cancelled one would have too
        CompletableFuture<Fired> later = schedule(loop, 60, new ScheduledFuture<?>[1]);
        later.get(5, TimeUnit.SECONDS);
        assertFalse(cancelled.isDone(), "a cancelled deadline ran");
        assertTrue(task[0].isCancelled());
    }

    @Test
    void aClosedDeadlineThreadDropsALoopDeadlineQuietly() throws Exception {
        EventLoop loop = loops.next();
        ScheduledFuture<?>[] task = new ScheduledFuture<?>[1];
        CompletableFuture<Fired> fired = schedule(loop, 10, task);
        deadlines.shutdownNow();
        AtomicBoolean loopAlive = new AtomicBoolean();
        // the loop task runs after the deadline's timer did (same loop, later deadline): it survived the rejection
        loop.schedule(() -> loopAlive.set(true), 40, TimeUnit.MILLISECONDS).get(5, TimeUnit.SECONDS);
        assertTrue(loopAlive.get());
        assertTrue(task[0].isDone());
        assertFalse(fired.isDone());
    }
}
