package analytics.engine.server;

import io.netty.channel.epoll.Epoll;
import io.netty.channel.unix.DomainDatagramSocketAddress;
import io.netty.channel.unix.DomainSocketAddress;
import io.netty.channel.unix.Socket;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

class SystemdNotifyTest {

    @TempDir Path dir;
    private Socket receiver;
    private String path;

    @BeforeEach
    void bind() throws Exception {
        Epoll.ensureAvailability();
        path = dir.resolve("notify.sock").toString();
        receiver = Socket.newSocketDomainDgram();
        receiver.bind(new DomainSocketAddress(path));
    }

    @AfterEach
    void close() throws Exception {
        receiver.close();
    }

    /** The sender returns only after sendto(2) succeeded, so the datagram is already queued here. */
    private static String receive(Socket s) throws Exception {
        ByteBuffer buf = ByteBuffer.allocateDirect(4096);
        DomainDatagramSocketAddress from = s.recvFromDomainSocket(buf, 0, buf.capacity());
        assertNotNull(from, "no datagram was queued on the notify socket");
        byte[] b = new byte[from.receivedAmount()];
        buf.get(0, b);
        return new String(b, StandardCharsets.UTF_8);
    }

    private static boolean nothingQueued(Socket s) throws Exception {
        ByteBuffer buf = ByteBuffer.allocateDirect(4096);
        return s.recvFromDomainSocket(buf, 0, buf.capacity()) == null;
    }

    @Test
    void readyCarriesStatusAndArrivesAsOneDatagram() throws Exception {
        SystemdNotify n = SystemdNotify.fromEnvironment(Map.of("NOTIFY_SOCKET", path), 42);
        assertTrue(n.isEnabled());
        assertTrue(n.send(SystemdNotify.withStatus("READY=1", "4 workers up")));
        assertEquals("READY=1\nSTATUS=4 workers up", receive(receiver));
        assertTrue(nothingQueued(receiver));
        n.close();
    }

    @Test
    void statusNewlinesCannotInjectAssignments() throws Exception {
        SystemdNotify n = new SystemdNotify(path, 0);
        assertTrue(n.send(SystemdNotify.withStatus("READY=1", "line1\nSTOPPING=1")));
        assertEquals("READY=1\nSTATUS=line1 STOPPING=1", receive(receiver));
        n.close();
    }

    @Test
    void reloadingCarriesMonotonicTimestamp() throws Exception {
        SystemdNotify n = new SystemdNotify(path, 0);
        long before = System.nanoTime() / 1000;
        assertTrue(n.send(SystemdNotify.reloadingMessage()));
        String msg = receive(receiver);
        String[] lines = msg.split("\n");
        assertEquals("RELOADING=1", lines[0]);
        assertTrue(lines[1].startsWith("MONOTONIC_USEC="), msg);
        long usec = Long.parseLong(lines[1].substring("MONOTONIC_USEC=".length()));
        assertTrue(usec >= before && usec <= System.nanoTime() / 1000, msg);
        n.close();
    }

    @Test
    void severalMessagesReuseTheSocketInOrder() throws Exception {
        SystemdNotify n = new SystemdNotify(path, 0);
        assertTrue(n.send("WATCHDOG=1"));
        assertTrue(n.send("STOPPING=1"));
        assertEquals("WATCHDOG=1", receive(receiver));
        assertEquals("STOPPING=1", receive(receiver));
        n.close();
    }

    @Test
    void abstractNamespaceAddress() throws Exception {
        String name = "analytics-notify-test-" + ProcessHandle.current().pid() + "-" + System.nanoTime();
        Socket abs = Socket.newSocketDomainDgram();
        try {
            abs.bind(new DomainSocketAddress("\0" + name));
            SystemdNotify n = new SystemdNotify("@" + name, 0);
            assertTrue(n.send("READY=1"));
            assertEquals("READY=1", receive(abs));
            n.close();
        } finally {
            abs.close();
        }
    }

    @Test
    void disabledWithoutNotifySocket() {
        SystemdNotify n = SystemdNotify.fromEnvironment(Map.of("WATCHDOG_USEC", "30000000"), 1);
        assertFalse(n.isEnabled());
        assertFalse(n.send("READY=1"));
        assertEquals(0, n.watchdogMillis());
        SystemdNotify empty = SystemdNotify.fromEnvironment(Map.of("NOTIFY_SOCKET", ""), 1);
        assertFalse(empty.isEnabled());
    }

    @Test
    void watchdogIntervalFromEnvironment() {
        assertEquals(30_000, SystemdNotify.fromEnvironment(
                Map.of("NOTIFY_SOCKET", path, "WATCHDOG_USEC", "30000000"), 7).watchdogMillis());
        assertEquals(30_000, SystemdNotify.fromEnvironment(
                Map.of("NOTIFY_SOCKET", path, "WATCHDOG_USEC", "30000000", "WATCHDOG_PID", "7"), 7).watchdogMillis());
        // the watchdog belongs to another process
        assertEquals(0, SystemdNotify.fromEnvironment(
                Map.of("NOTIFY_SOCKET", path, "WATCHDOG_USEC", "30000000", "WATCHDOG_PID", "8"), 7).watchdogMillis());
        assertEquals(0, SystemdNotify.fromEnvironment(
                Map.of("NOTIFY_SOCKET", path, "WATCHDOG_USEC", "garbage"), 7).watchdogMillis());
        assertEquals(0, SystemdNotify.fromEnvironment(Map.of("NOTIFY_SOCKET", path), 7).watchdogMillis());
    }

    @Test
    void sendFailureIsReportedNotThrown() throws Exception {
        SystemdNotify n = new SystemdNotify(dir.resolve("missing.sock").toString(), 0);
        assertFalse(n.send("READY=1"));
        assertFalse(n.send("READY=1"));
        assertTrue(nothingQueued(receiver));
        n.close();
    }

    @Test
    void staticApiIsNoOpOutsideSystemd() {
        // surefire runs without NOTIFY_SOCKET; these must neither throw nor block
        if (System.getenv("NOTIFY_SOCKET") == null) {
            assertFalse(SystemdNotify.enabled());
            SystemdNotify.ready("x");
            SystemdNotify.reloading();
            SystemdNotify.status("x");
            SystemdNotify.watchdogPing();
            SystemdNotify.stopping();
            assertEquals(0, SystemdNotify.watchdogIntervalMillis());
        } else {
            assertTrue(SystemdNotify.enabled());
        }
    }
}
