package analytics.engine.workers.transport;

import io.netty.channel.Channel;
import io.netty.channel.ChannelFuture;
import io.netty.channel.ChannelPromise;
import io.netty.channel.EventLoop;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.group.ChannelGroup;
import io.netty.util.concurrent.AbstractEventExecutorGroup;
import io.netty.util.concurrent.EventExecutor;
import io.netty.util.concurrent.Future;
import java.util.Iterator;
import java.util.concurrent.TimeUnit;

/**
 * The child group of the worker socket when it shares the gRPC server's event loops: each accepted worker
 * connection goes to the loop with the fewest worker connections (lowest first on a tie). The shared group's own
 * round-robin also counts every gRPC and HTTP connection (health probes among them), so it could put all workers on
 * one loop, and a gRPC connection on another loop would then never find a worker of its own (see
 * {@code WorkerWait.borrowNowNearby}). Everything else is the shared group's; it is not shut down from here.
 */
final class BalancedLoops extends AbstractEventExecutorGroup implements EventLoopGroup {

    private final EventLoopGroup loops;
    /** The open worker connections (closed ones leave it by themselves). */
    private final ChannelGroup connections;

    BalancedLoops(EventLoopGroup loops, ChannelGroup connections) {
        this.loops = loops;
        this.connections = connections;
    }

    /** The loop serving the fewest of {@link #connections}. */
    @Override
    public EventLoop next() {
        EventLoop best = null;
        int bestCount = Integer.MAX_VALUE;
        for (EventExecutor e : loops) {
            int n = 0;
            for (Channel c : connections) {
                if (c.isOpen() && c.eventLoop() == e) {
                    n++;
                }
            }
            if (n < bestCount) {
                best = (EventLoop) e;
                bestCount = n;
            }
        }
        return best;
    }

    /** Counted at once (register sets its loop synchronously): workers that connect together are spread as well. */
    @Override
    public ChannelFuture register(Channel channel) {
        ChannelFuture f = next().register(channel);
        connections.add(channel);
        return f;
    }

    @Override
    public ChannelFuture register(ChannelPromise promise) {
        ChannelFuture f = next().register(promise);
        connections.add(promise.channel());
        return f;
    }

    @Override
    @Deprecated
    public ChannelFuture register(Channel channel, ChannelPromise promise) {
        ChannelFuture f = next().register(channel, promise);
        connections.add(channel);
        return f;
    }

    @Override
    public Iterator<EventExecutor> iterator() {
        return loops.iterator();
    }

    @Override
    public boolean isShuttingDown() {
        return loops.isShuttingDown();
    }

    @Override
    public Future<?> shutdownGracefully(long quietPeriod, long timeout, TimeUnit unit) {
        return loops.terminationFuture(); // the owner's to shut down
    }

    @Override
    public Future<?> terminationFuture() {
        return loops.terminationFuture();
    }

    @Override
    @Deprecated
    public void shutdown() {
        // the owner's to shut down
    }

    @Override
    public boolean isShutdown() {
        return loops.isShutdown();
    }

    @Override
    public boolean isTerminated() {
        return loops.isTerminated();
    }

    @Override
    public boolean awaitTermination(long timeout, TimeUnit unit) throws InterruptedException {
        return loops.awaitTermination(timeout, unit);
    }
}
