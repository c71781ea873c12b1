package analytics.engine.workers.transport;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;

import io.netty.channel.Channel;
import io.netty.channel.DefaultEventLoopGroup;
import io.netty.channel.EventLoop;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.group.ChannelGroup;
import io.netty.channel.group.DefaultChannelGroup;
import io.netty.channel.local.LocalChannel;
import io.netty.util.concurrent.GlobalEventExecutor;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** Worker connections spread over the shared loops by count, whatever else the loops' round-robin served. */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class BalancedLoopsTest {

    private final EventLoopGroup loops = new DefaultEventLoopGroup(2);
    private final ChannelGroup workers = new DefaultChannelGroup(GlobalEventExecutor.INSTANCE);
    private final BalancedLoops balanced = new BalancedLoops(loops, workers);

    @AfterEach
    void stop() {
        workers.close().awaitUninterruptibly(5, TimeUnit.SECONDS);
        loops.shutdownGracefully(0, 1, TimeUnit.SECONDS).awaitUninterruptibly(5, TimeUnit.SECONDS);
    }

    private Channel register() {
        Channel c = new LocalChannel();
        balanced.register(c).syncUninterruptibly();
        return c;
    }

    @Test
    void spreadsWorkersEvenIfTheRoundRobinWasAdvancedInBetween() {
        List<EventLoop> both = List.of(loops.next(), loops.next());
        Channel first = register();
        loops.next(); // another connection (gRPC, a health probe) took a turn of the group's round-robin
        Channel second = register();
        assertFalse(first.eventLoop() == second.eventLoop(), "both workers on one loop");
        loops.next();
        loops.next();
        loops.next();
        Channel third = register();
        Channel fourth = register();
        assertFalse(third.eventLoop() == fourth.eventLoop(), "uneven: " + third.eventLoop() + ", " + fourth.eventLoop());
        for (EventLoop l : both) {
            assertEquals(2, workers.stream().filter(c -> c.eventLoop() == l).count(), "two workers per loop");
        }
    }

    @Test
    void aClosedConnectionFreesItsLoop() {
        Channel first = register();
        Channel second = register();
        second.close().syncUninterruptibly();
        Channel replacement = register();
        assertSame(second.eventLoop(), replacement.eventLoop(), "the replacement goes where one is missing");
        assertFalse(first.eventLoop() == replacement.eventLoop());
    }

    @Test
    void theSharedGroupIsNotShutDownFromHere() {
        balanced.shutdownGracefully(0, 1, TimeUnit.SECONDS);
        balanced.shutdown();
        assertFalse(loops.isShuttingDown());
    }
}
