package analytics.engine.server;

import io.netty.channel.epoll.Epoll;
import io.netty.channel.unix.Socket;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.Objects;

/**
 * The systemd notification protocol ({@code sd_notify(3)}) for {@code Type=notify} units.
 *
 * <p>systemd passes {@code NOTIFY_SOCKET} (a filesystem path, or an abstract address starting with
 * {@code @}) to the service; the service sends newline-separated {@code KEY=VALUE} assignments as one
 * datagram on an {@code AF_UNIX}/{@code SOCK_DGRAM} socket. Java 17's {@code UnixDomainSocketAddress}
 * only supports stream sockets, so the datagram is sent through Netty's native unix socket
 * ({@link Socket#newSocketDomainDgram()} / {@link Socket#sendToDomainSocket}) from
 * netty-transport-native-epoll, which is already on the classpath. That is the same native code
 * {@code EpollDomainDatagramChannel} uses, called synchronously so no event loop is needed and a
 * notification has been handed to the kernel when the method returns.
 *
 * <p>Every method is a no-op when {@code NOTIFY_SOCKET} is unset (not running under systemd, or a
 * unit that is not {@code Type=notify}). Failures to send are logged to stderr once and never thrown:
 * a missing notification must not take the server down (systemd will time the start out instead).
 */
public final class SystemdNotify {

    private static final SystemdNotify DEFAULT = fromEnvironment(System.getenv(), ProcessHandle.current().pid());

    private final byte[] address;          // null: notifications disabled
    private final long watchdogIntervalMillis;
    private final Object lock = new Object();
    private Socket socket;                 // created lazily, guarded by lock
    private boolean warned;

    SystemdNotify(String notifySocket, long watchdogIntervalMillis) {
        this.address = encodeAddress(notifySocket);
        this.watchdogIntervalMillis = this.address == null ? 0 : Math.max(0, watchdogIntervalMillis);
    }

    /**
     * Reads {@code NOTIFY_SOCKET}, {@code WATCHDOG_USEC} and {@code WATCHDOG_PID} from {@code env}.
     * As in {@code sd_watchdog_enabled(3)}, the watchdog applies only when {@code WATCHDOG_PID} is unset
     * or equals {@code pid}.
     */
    static SystemdNotify fromEnvironment(Map<String, String> env, long pid) {
        String socketPath = env.get("NOTIFY_SOCKET");
        long interval = 0;
        String usec = env.get("WATCHDOG_USEC");
        String wpid = env.get("WATCHDOG_PID");
        boolean forUs = wpid == null || wpid.isBlank() || wpid.trim().equals(Long.toString(pid));
        if (usec != null && forUs) {
            try {
                long us = Long.parseLong(usec.trim());
                if (us > 0) interval = Math.max(1, us / 1000);
            } catch (NumberFormatException e) {
                interval = 0;
            }
        }
        return new SystemdNotify(socketPath, interval);
    }

    private static byte[] encodeAddress(String notifySocket) {
        if (notifySocket == null || notifySocket.isEmpty()) return null;
        byte[] b = notifySocket.getBytes(StandardCharsets.UTF_8);
        if (b[0] == '@') b[0] = 0; // abstract namespace
        return b;
    }

    // ---- static API used by the server ----

    /** READY=1 with a human-readable STATUS; call once the workers are up (and again after a reload). */
    public static void ready(String status) { DEFAULT.send(withStatus("READY=1", status)); }

    /** RELOADING=1 (with MONOTONIC_USEC, as newer systemd wants); follow with {@link #ready} when done. */
    public static void reloading() { DEFAULT.send(reloadingMessage()); }

    /** STOPPING=1: the graceful drain has begun. */
    public static void stopping() { DEFAULT.send("STOPPING=1"); }

    /** WATCHDOG=1; schedule every {@link #watchdogIntervalMillis()} / 2 when that is non-zero. */
    public static void watchdogPing() { DEFAULT.send("WATCHDOG=1"); }

    /** STATUS=..., shown by {@code systemctl status}. */
    public static void status(String status) { DEFAULT.send("STATUS=" + sanitize(status)); }

    /** The watchdog timeout from {@code WATCHDOG_USEC} in milliseconds, 0 when there is no watchdog. */
    public static long watchdogIntervalMillis() { return DEFAULT.watchdogIntervalMillis; }

    /** True when {@code NOTIFY_SOCKET} is set. */
    public static boolean enabled() { return DEFAULT.isEnabled(); }

    // ---- instance API (tests) ----

    boolean isEnabled() { return address != null; }

    long watchdogMillis() { return watchdogIntervalMillis; }

    static String reloadingMessage() {
        return "RELOADING=1\nMONOTONIC_USEC=" + (System.nanoTime() / 1000L); // nanoTime is CLOCK_MONOTONIC on Linux
    }

    static String withStatus(String head, String status) {
        return status == null || status.isEmpty() ? head : head + "\nSTATUS=" + sanitize(status);
    }

    private static String sanitize(String s) {
        return Objects.toString(s, "").replace('\n', ' ').replace('\r', ' ');
    }

    /** Sends one datagram; returns false when disabled or when sending failed (reported once on stderr). */
    boolean send(String message) {
        if (address == null) return false;
        byte[] payload = message.getBytes(StandardCharsets.UTF_8);
        synchronized (lock) {
            try {
                if (socket == null) {
                    Epoll.ensureAvailability(); // loads the native library that implements Socket
                    socket = Socket.newSocketDomainDgram();
                }
                ByteBuffer buf = ByteBuffer.allocateDirect(payload.length);
                buf.put(payload).flip();
                int n = socket.sendToDomainSocket(buf, 0, payload.length, address);
                if (n != payload.length) throw new IOException("short send: " + n + " of " + payload.length + " bytes");
                return true;
            } catch (IOException | RuntimeException | UnsatisfiedLinkError e) {
                if (!warned) {
                    warned = true;
                    System.err.println("systemd notify to " + printable() + " failed: " + e);
                }
                closeQuietly();
                return false;
            }
        }
    }

    private String printable() {
        String s = new String(address, StandardCharsets.UTF_8);
        return s.startsWith("\0") ? "@" + s.substring(1) : s;
    }

    private void closeQuietly() {
        if (socket != null) {
            try { socket.close(); } catch (IOException ignored) { /* nothing to do */ }
            socket = null;
        }
    }

    void close() {
        synchronized (lock) { closeQuietly(); }
    }
}
