package analytics.engine.fuzz;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import analytics.engine.proto.AnalysisRequest;
import analytics.engine.proto.AnalyticsEngineGrpc;
import analytics.engine.server.TestEngine;
import io.grpc.ManagedChannel;
import io.grpc.netty.NettyChannelBuilder;
import io.netty.channel.epoll.EpollDomainSocketChannel;
import io.netty.channel.epoll.EpollEventLoopGroup;
import io.netty.channel.unix.DomainSocketAddress;
import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.net.InetSocketAddress;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLEngineResult;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Garbage bytes and half-open connections against the shared TCP port (HTTP/1 junk, HTTP/2 preface plus
 * junk frames, a TLS ClientHello on the plaintext port, slowloris-style partial headers, idle connections,
 * resets) and against the Unix socket. The server must close junk connections itself, keep serving gRPC
 * and /health while hundreds of half-open connections are held, and return to its baseline thread and
 * file descriptor counts once the clients are gone.
 */
class ConnectionAbuseTest {

    static final long SEED = 7L;
    static final byte[] PREFACE = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".getBytes(StandardCharsets.US_ASCII);

    @TempDir
    static Path tmp;
    static TestEngine engine;
    static Path socket;
    static EpollEventLoopGroup udsGroup;
    static ManagedChannel udsChannel;

    @BeforeAll
    static void start() throws Exception {
        ((ch.qos.logback.classic.Logger) org.slf4j.LoggerFactory.getLogger("io.grpc"))
                .setLevel(ch.qos.logback.classic.Level.ERROR);
        socket = tmp.resolve("engine.sock");
        engine = new TestEngine(Map.of("socket_path", socket.toString()), null);
        udsGroup = new EpollEventLoopGroup(1);
        udsChannel = NettyChannelBuilder.forAddress(new DomainSocketAddress(socket.toString()))
                .channelType(EpollDomainSocketChannel.class).eventLoopGroup(udsGroup).usePlaintext().build();
    }

    @AfterAll
    static void stop() throws Exception {
        udsChannel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
        udsGroup.shutdownGracefully(0, 1, TimeUnit.SECONDS).await(5, TimeUnit.SECONDS);
        engine.close();
        ((ch.qos.logback.classic.Logger) org.slf4j.LoggerFactory.getLogger("io.grpc")).setLevel(null);
    }

    static int fds() throws IOException {
        try (var s = Files.list(Path.of("/proc/self/fd"))) {
            return (int) s.count();
        }
    }

    static int threads() {
        return ManagementFactory.getThreadMXBean().getThreadCount();
    }

    void assertServing() throws IOException {
        AnalysisRequest q = AnalysisRequest.newBuilder().setRequestId("probe").setAlgorithm("mean").addData(1).addData(3).build();
        assertEquals("2.0", engine.stub.withDeadlineAfter(10, TimeUnit.SECONDS).analyze(q).getResultJson());
        assertEquals("2.0", AnalyticsEngineGrpc.newBlockingStub(udsChannel).withDeadlineAfter(10, TimeUnit.SECONDS)
                .analyze(q).getResultJson());
        assertTrue(engine.get("/health").startsWith("HTTP/1.1 200"));
    }

    SocketChannel tcp() throws IOException {
        SocketChannel ch = SocketChannel.open(new InetSocketAddress("127.0.0.1", engine.server.port()));
        ch.configureBlocking(true);
        return ch;
    }

    SocketChannel uds() throws IOException {
        SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX);
        ch.connect(UnixDomainSocketAddress.of(socket));
        return ch;
    }

    /**
     * Sends the bytes, then reads until the server closes the connection; fails if it is still open after
     * 10 s. Returns what the server answered.
     */
    static byte[] sendExpectClose(SocketChannel ch, byte[] payload) throws IOException {
        try (ch) {
            try {
                ch.write(ByteBuffer.wrap(payload));
            } catch (IOException e) {
                return new byte[0]; // the server already reset the connection: closed, as required
            }
            java.io.ByteArrayOutputStream got = new java.io.ByteArrayOutputStream();
            ch.configureBlocking(false);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            ByteBuffer buf = ByteBuffer.allocate(8192);
            try (java.nio.channels.Selector sel = java.nio.channels.Selector.open()) {
                ch.register(sel, java.nio.channels.SelectionKey.OP_READ);
                while (true) {
                    long left = (deadline - System.nanoTime()) / 1_000_000;
                    if (left <= 0) {
                        throw new AssertionError("server did not close the connection (" + ch.getRemoteAddress()
                                + ") within 10 s after " + payload.length + " junk bytes: "
                                + java.util.HexFormat.of().formatHex(payload, 0, Math.min(80, payload.length)));
                    }
                    sel.select(left);
                    sel.selectedKeys().clear();
                    int n;
                    try {
                        n = ch.read(buf);
                    } catch (IOException e) {
                        break; // connection reset: also a close
                    }
                    if (n < 0) {
                        break;
                    }
                    got.write(buf.array(), 0, buf.position());
                    buf.clear();
                }
            }
            return got.toByteArray();
        }
    }

    static byte[] junk(Random r, int max) {
        byte[] b = new byte[1 + r.nextInt(max)];
        r.nextBytes(b);
        return b;
    }

    static byte[] exactly(Random r, int n) {
        byte[] b = new byte[n];
        r.nextBytes(b);
        return b;
    }

    static byte[] http2Frame(int type, int flags, int stream, byte[] payload, int declaredLength) {
        ByteBuffer f = ByteBuffer.allocate(9 + payload.length);
        f.put((byte) (declaredLength >>> 16)).put((byte) (declaredLength >>> 8)).put((byte) declaredLength);
        f.put((byte) type).put((byte) flags).putInt(stream).put(payload);
        return f.array();
    }

    static byte[] concat(byte[]... parts) {
        java.io.ByteArrayOutputStream o = new java.io.ByteArrayOutputStream();
        for (byte[] p : parts) {
            o.writeBytes(p);
        }
        return o.toByteArray();
    }

    /** A real TLS ClientHello, as a client that assumes TLS would send it. */
    static byte[] clientHello() throws Exception {
        SSLEngine e = SSLContext.getDefault().createSSLEngine("localhost", 443);
        e.setUseClientMode(true);
        e.beginHandshake();
        ByteBuffer out = ByteBuffer.allocate(e.getSession().getPacketBufferSize());
        SSLEngineResult res = e.wrap(ByteBuffer.allocate(0), out);
        assertTrue(res.bytesProduced() > 0);
        out.flip();
        byte[] b = new byte[out.remaining()];
        out.get(b);
        return b;
    }

    @Test
    void junkAndHalfOpenConnectionsDoNotHurtTheServer() throws Exception {
        // Warm up: every event-loop thread of the server exists before the baseline is taken.
        for (int i = 0; i < 2 * Runtime.getRuntime().availableProcessors() + 2; i++) {
            assertServing();
            tcp().close();
            uds().close();
        }
        System.gc();
        int fds0 = fds();
        int threads0 = threads();
        Random r = new Random(SEED);
        int junkConnections = 0;

        List<Supplier<byte[]>> tcpJunk = List.of(
                () -> junk(r, 4096),                                                    // random bytes
                () -> concat("GET /health HTTP/1.1\r\nX: ".getBytes(), "a".repeat(100_000).getBytes(),
                        "\r\n\r\n".getBytes()),                                        // oversized header
                () -> ("GET /" + "x".repeat(20_000) + " HTTP/1.1\r\n\r\n").getBytes(), // oversized request line
                () -> "POST /metrics HTTP/1.1\r\nContent-Length: 999999999\r\n\r\nabc".getBytes(),
                () -> "GET /health HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".getBytes(),
                () -> {                                                                   // HTTP/2 preface + junk
                    byte[] j = junk(r, 2048);
                    if (j.length > 3 && j[3] == 4) {
                        j[3] = 0; // a junk SETTINGS header could announce a valid frame still to come
                    }
                    return concat(PREFACE, j);
                },
                () -> concat(PREFACE, http2Frame(4, 0, 0, new byte[0], 0),
                        http2Frame(1, 4, 1, exactly(r, 64), 64)),                          // HEADERS with garbage HPACK
                () -> concat(PREFACE, http2Frame(0, 0, 1, new byte[16], 16_000_000)),   // frame far above max size
                () -> concat(PREFACE, http2Frame(4, 0, 0, new byte[0], 0), http2Frame(0, 1, 3, exactly(r, 32), 32)),
                () -> {                                                                   // TLS hello on plaintext
                    try {
                        return clientHello();
                    } catch (Exception e) {
                        throw new IllegalStateException(e);
                    }
                });
        for (int round = 0; round < 20; round++) {
            for (Supplier<byte[]> s : tcpJunk) {
                byte[] payload = s.get();
                byte[] answer = sendExpectClose(tcp(), payload);
                String text = new String(answer, StandardCharsets.ISO_8859_1);
                if (payload[0] == 'G' || payload[0] == 'P' && payload[1] == 'O') {
                    assertTrue(text.isEmpty() || text.startsWith("HTTP/1.1 4"), text);
                }
                junkConnections++;
            }
            // Unix socket: gRPC only.
            for (byte[] payload : new byte[][] {junk(r, 4096), concat(PREFACE, new byte[] {0, 0, 8, 0}, junk(r, 512)),
                "GET /health HTTP/1.1\r\n\r\n".getBytes(), clientHello()}) {
                sendExpectClose(uds(), payload);
                junkConnections++;
            }
        }
        assertServing();

        // Half-open: idle connections, slowloris partial headers, half an HTTP/2 handshake; held open.
        List<SocketChannel> held = new ArrayList<>();
        try {
            for (int i = 0; i < 150; i++) {
                SocketChannel t = tcp();
                held.add(t);
                switch (i % 3) {
                    case 0 -> { }
                    case 1 -> t.write(ByteBuffer.wrap("GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ".getBytes()));
                    default -> t.write(ByteBuffer.wrap(PREFACE));
                }
                SocketChannel u = uds();
                held.add(u);
                if (i % 2 == 1) {
                    u.write(ByteBuffer.wrap(java.util.Arrays.copyOf(PREFACE, 10)));
                }
            }
            long t0 = System.nanoTime();
            assertServing();
            System.out.printf("ABUSE-SUMMARY while %d half-open connections were held, a gRPC (TCP+UDS) and /health "
                    + "round took %d ms%n", held.size(), (System.nanoTime() - t0) / 1_000_000);
        } finally {
            for (SocketChannel c : held) {
                c.setOption(java.net.StandardSocketOptions.SO_LINGER, c.getRemoteAddress() instanceof InetSocketAddress ? 0 : -1);
                c.close();
            }
        }
        assertServing();

        // Back to baseline: poll with a deadline (the server notices the closes asynchronously).
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(15);
        int fds = fds();
        int threads = threads();
        while ((fds > fds0 + 2 || threads > threads0 + 2) && System.nanoTime() < deadline) {
            java.util.concurrent.locks.LockSupport.parkNanos(20_000_000L); // poll interval, not synchronisation
            fds = fds();
            threads = threads();
        }
        System.out.printf("ABUSE-SUMMARY junk connections=%d (all closed by the server), half-open held=%d, "
                + "fds %d -> %d, threads %d -> %d%n", junkConnections, held.size(), fds0, fds, threads0, threads);
        assertTrue(fds <= fds0 + 2, "file descriptors back near baseline: " + fds0 + " -> " + fds);
        assertTrue(threads <= threads0 + 2, "threads back near baseline: " + threads0 + " -> " + threads);
    }
}
