package analytics.engine.workers;

import static analytics.engine.workers.WorkerTestSupport.config;
import static analytics.engine.workers.WorkerTestSupport.input;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** Garbage, impostors and half-open connections on the worker socket: dropped, and the pool keeps serving. */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class WorkerSocketAbuseTest {

    private static SocketChannel connect(PythonWorkerPool pool) throws IOException {
        SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX);
        ch.connect(UnixDomainSocketAddress.of(pool.runtimeDir().resolve("workers.sock")));
        return ch;
    }

    /** Reads until EOF (the server closed the connection); fails if that does not happen in time. */
    private static long closedAfterMs(SocketChannel ch, Duration within) throws Exception {
        long t0 = System.nanoTime();
        ch.configureBlocking(true);
        Thread watchdog = new Thread(() -> {
            try {
                Thread.sleep(within.toMillis());
                ch.close(); // unblocks the read below; the assertion then fails
            } catch (InterruptedException | IOException ignored) {
                // done
            }
        });
        watchdog.setDaemon(true);
        watchdog.start();
        ByteBuffer buf = ByteBuffer.allocate(4096);
        try {
            while (ch.read(buf) >= 0) {
                buf.clear();
            }
        } catch (IOException e) {
            // reset by the server also counts as closed, unless our watchdog fired
            if (!ch.isOpen()) {
                throw new AssertionError("the server did not close the connection within " + within.toMillis() + " ms");
            }
        } finally {
            watchdog.interrupt();
        }
        return (System.nanoTime() - t0) / 1_000_000;
    }

    @Test
    void garbageImpostorsAndSilentPeersAreDropped() throws Exception {
        WorkerPoolConfig base = config();
        try (PythonWorkerPool pool = new PythonWorkerPool(base.withTimeouts(base.timeouts().withStartup(Duration.ofSeconds(2))
                .withPing(Duration.ofSeconds(10), Duration.ofSeconds(5))), new SimpleMeterRegistry())) {
            pool.start();
            assertTrue(pool.awaitReady(Duration.ofSeconds(30), true));
            Random rnd = new Random(7);

            // random garbage
            for (int i = 0; i < 20; i++) {
                try (SocketChannel ch = connect(pool)) {
                    byte[] junk = new byte[1 + rnd.nextInt(200)];
                    rnd.nextBytes(junk);
                    // a complete frame with a random body: decoded at once (not a map/hello → dropped)
                    ch.write(ByteBuffer.allocate(4 + junk.length).putInt(junk.length).put(junk).flip());
                    closedAfterMs(ch, Duration.ofSeconds(5));
                }
            }
            // a huge length prefix (would be 4 GiB)
            try (SocketChannel ch = connect(pool)) {
                ch.write(ByteBuffer.wrap(new byte[] {(byte) 0xff, (byte) 0xff, (byte) 0xff, (byte) 0xff, 1, 2, 3}));
                closedAfterMs(ch, Duration.ofSeconds(5));
            }
            // a well-formed hello with a token the engine never issued (msgpack {"type":"hello","token":"x"})
            try (SocketChannel ch = connect(pool)) {
                byte[] body = {(byte) 0x82, (byte) 0xa4, 't', 'y', 'p', 'e', (byte) 0xa5, 'h', 'e', 'l', 'l', 'o',
                        (byte) 0xa5, 't', 'o', 'k', 'e', 'n', (byte) 0xa1, 'x'};
                ByteBuffer f = ByteBuffer.allocate(4 + body.length).putInt(body.length).put(body).flip();
                ch.write(f);
                closedAfterMs(ch, Duration.ofSeconds(5));
            }
            // a peer that connects and says nothing: closed after the start-up timeout (2 s here)
            try (SocketChannel ch = connect(pool)) {
                long ms = closedAfterMs(ch, Duration.ofSeconds(10));
                assertTrue(ms >= 1500, "closed after " + ms + " ms");
            }
            // a plain-text HTTP request
            try (SocketChannel ch = connect(pool)) {
                ch.write(ByteBuffer.wrap("GET / HTTP/1.1\r\nHost: x\r\n\r\n".getBytes(StandardCharsets.US_ASCII)));
                closedAfterMs(ch, Duration.ofSeconds(5));
            }
            // the real workers were not disturbed
            assertEquals(2, WorkerTestSupport.count(pool, "ready"));
            assertTrue(pool.submit(input("after-abuse", "mean", Map.of(), 1, 3), 5000).get(10, TimeUnit.SECONDS)
                    .resultJson().startsWith("2"));
        }
    }
}
