package analytics.engine.workers.transport;

import io.netty.bootstrap.ServerBootstrap;
import io.netty.buffer.ByteBuf;
import io.netty.channel.Channel;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.ChannelOption;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.MultiThreadIoEventLoopGroup;
import io.netty.channel.SimpleChannelInboundHandler;
import io.netty.channel.epoll.EpollDomainSocketChannel;
import io.netty.channel.epoll.EpollIoHandler;
import io.netty.channel.epoll.EpollServerDomainSocketChannel;
import io.netty.channel.group.ChannelGroup;
import io.netty.channel.group.DefaultChannelGroup;
import io.netty.channel.unix.DomainSocketAddress;
import io.netty.handler.codec.LengthFieldBasedFrameDecoder;
import io.netty.handler.codec.MessageToMessageDecoder;
import io.netty.util.concurrent.DefaultThreadFactory;
import io.netty.util.concurrent.GlobalEventExecutor;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The engine's end of the worker protocol: one epoll Unix-domain server socket; each accepted connection gets a
 * length-field frame decoder, a msgpack decoder and a {@link Connection} that hands decoded maps to the
 * {@link Listener}. Protocol errors close the connection (logged with length/type only).
 */
public final class WorkerSocketServer implements AutoCloseable {

    private static final Logger log = LoggerFactory.getLogger(WorkerSocketServer.class);

    /** Callbacks, invoked on the event loop thread. */
    public interface Listener {
        void onMessage(Connection conn, Map<String, Object> msg);

        void onClosed(Connection conn);

        void onProtocolError(Connection conn, String description);
    }

    /** One accepted worker connection. {@code attachment} is free for the listener (the bound worker handle). */
    public static final class Connection {
        private final Channel channel;
        public volatile Object attachment;
        /** Set on a protocol error: nothing more from this connection is believed (it is being closed). */
        volatile boolean broken;

        Connection(Channel channel) {
            this.channel = channel;
        }

        public Channel channel() {
            return channel;
        }

        public boolean isActive() {
            return channel.isActive();
        }

        public void close() {
            broken = true;
            channel.close();
        }
    }

    private final EventLoopGroup boss;
    private final EventLoopGroup io;
    /** True when {@link #io} (also the acceptor) belongs to the caller: it is not shut down here. */
    private final boolean sharedLoops;
    /** Accepted worker connections: closed by {@link #close()}, which a shared group's shutdown does not do. */
    private final ChannelGroup accepted = new DefaultChannelGroup(GlobalEventExecutor.INSTANCE);
    private final Channel serverChannel;
    private final Path socketPath;

    /** Largest first frame (the hello) accepted from a connection that has not identified itself yet. */
    static final int MAX_HELLO_BYTES = 4 * 1024 * 1024;

    /**
     * @param helloTimeout a connection that has not been identified (listener set {@code attachment}) within this
     *                     time is closed: no half-open connection lingers on the socket
     */
    public WorkerSocketServer(Path socketPath, int maxFrameBytes, java.time.Duration helloTimeout, Listener listener)
            throws InterruptedException {
        this(socketPath, maxFrameBytes, helloTimeout, listener, null);
    }

    /**
     * @param sharedLoops an epoll event loop group to accept and serve the worker connections on (the gRPC
     *                    server's, so that a request whose gRPC connection and worker share a loop needs no
     *                    thread hand-off; the caller shuts it down after {@link #close()}), or null for this
     *                    server's own two threads ({@code worker-sock-accept}, {@code worker-sock-io})
     */
    public WorkerSocketServer(Path socketPath, int maxFrameBytes, java.time.Duration helloTimeout, Listener listener,
                              EventLoopGroup sharedLoops) throws InterruptedException {
        this.socketPath = socketPath;
        this.sharedLoops = sharedLoops != null;
        if (sharedLoops != null) {
            this.boss = sharedLoops;
            this.io = new BalancedLoops(sharedLoops, accepted);
        } else {
            this.boss = new MultiThreadIoEventLoopGroup(1, new DefaultThreadFactory("worker-sock-accept", true),
                    EpollIoHandler.newFactory());
            this.io = new MultiThreadIoEventLoopGroup(1, new DefaultThreadFactory("worker-sock-io", true),
                    EpollIoHandler.newFactory());
        }
        ServerBootstrap b = new ServerBootstrap()
                .group(boss, io)
                .channel(EpollServerDomainSocketChannel.class)
                .option(ChannelOption.SO_BACKLOG, 128)
                .childHandler(new ChannelInitializer<EpollDomainSocketChannel>() {
                    @Override
                    protected void initChannel(EpollDomainSocketChannel ch) {
                        Connection conn = new Connection(ch);
                        accepted.add(ch);
                        ch.eventLoop().schedule(() -> {
                            if (conn.attachment == null && ch.isActive()) {
                                log.warn("closing a worker connection that sent no valid hello within {} ms",
                                        helloTimeout.toMillis());
                                conn.close();
                            }
                        }, helloTimeout.toMillis(), TimeUnit.MILLISECONDS);
                        ch.pipeline()
                                .addLast("hello-guard", new io.netty.channel.ChannelInboundHandlerAdapter() {
                                    // an unidentified peer may not make us buffer a 256 MiB frame
                                    private long len;
                                    private int seen;

                                    @Override
                                    public void channelRead(ChannelHandlerContext ctx, Object msg) throws Exception {
                                        ByteBuf b = (ByteBuf) msg;
                                        for (int i = b.readerIndex(); i < b.writerIndex() && seen < 4; i++, seen++) {
                                            len = (len << 8) | b.getUnsignedByte(i);
                                        }
                                        if (seen == 4) {
                                            ctx.pipeline().remove(this);
                                            if (len > MAX_HELLO_BYTES) {
                                                b.release();
                                                throw new WireCodec.ProtocolException("first frame of " + len
                                                        + " bytes is too large for a hello");
                                            }
                                        }
                                        ctx.fireChannelRead(msg);
                                    }
                                })
                                // lengthFieldEndOffset (4) counts towards maxFrameLength
                                .addLast("frame", new LengthFieldBasedFrameDecoder(ByteOrder.BIG_ENDIAN,
                                        maxFrameBytes + 4, 0, 4, 0, 4, true))
                                .addLast("msgpack", new MessageToMessageDecoder<ByteBuf>() {
                                    @Override
                                    protected void decode(ChannelHandlerContext ctx, ByteBuf frame, List<Object> out)
                                            throws Exception {
                                        out.add(WireCodec.decode(frame));
                                    }
                                })
                                .addLast("handler", new SimpleChannelInboundHandler<Map<String, Object>>() {
                                    @Override
                                    protected void channelRead0(ChannelHandlerContext ctx, Map<String, Object> msg) {
                                        if (!conn.broken) {
                                            listener.onMessage(conn, msg);
                                        }
                                    }

                                    @Override
                                    public void channelInactive(ChannelHandlerContext ctx) {
                                        listener.onClosed(conn);
                                    }

                                    @Override
                                    public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
                                        Throwable c = cause;
                                        while (c.getCause() != null && c.getCause() != c) {
                                            c = c.getCause();
                                        }
                                        if (c instanceof java.io.IOException && !(c instanceof WireCodec.ProtocolException)) {
                                            // connection reset etc.: the worker died; channelInactive reports it
                                            log.debug("worker connection error: {}", c.toString());
                                        } else if (!conn.broken) {
                                            listener.onProtocolError(conn, c.getClass().getSimpleName() + ": " + c.getMessage());
                                        }
                                        conn.broken = true;
                                        ctx.close();
                                    }
                                });
                    }
                });
        try {
            this.serverChannel = b.bind(new DomainSocketAddress(socketPath.toFile())).sync().channel();
        } catch (InterruptedException | RuntimeException e) {
            shutdownGroups();
            throw e;
        }
        log.debug("listening for workers on {}", socketPath);
    }

    public Path socketPath() {
        return socketPath;
    }

    private void shutdownGroups() {
        if (sharedLoops) {
            return; // the owner's
        }
        boss.shutdownGracefully(0, 1, TimeUnit.SECONDS);
        io.shutdownGracefully(0, 1, TimeUnit.SECONDS);
    }

    @Override
    public void close() {
        try {
            serverChannel.close().awaitUninterruptibly(2, TimeUnit.SECONDS);
            accepted.close().awaitUninterruptibly(2, TimeUnit.SECONDS);
        } finally {
            shutdownGroups();
            if (!sharedLoops) {
                boss.terminationFuture().awaitUninterruptibly(3, TimeUnit.SECONDS);
                io.terminationFuture().awaitUninterruptibly(3, TimeUnit.SECONDS);
            }
        }
    }
}
