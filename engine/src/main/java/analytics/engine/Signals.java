package analytics.engine;

import java.util.concurrent.atomic.AtomicBoolean;
import org.slf4j.LoggerFactory;
import sun.misc.Signal;

/**
 * POSIX signals: SIGTERM/SIGINT run a graceful stop once (a second one forces exit 1); SIGHUP runs a
 * reload. Also tells systemd (Type=notify) about readiness, reloads and stopping.
 */
final class Signals {

    private static final AtomicBoolean STOPPING = new AtomicBoolean();

    private Signals() {
    }

    static void install(Runnable stop, Runnable reload) {
        Signal.handle(new Signal("TERM"), s -> onStop(stop, "SIGTERM"));
        Signal.handle(new Signal("INT"), s -> onStop(stop, "SIGINT"));
        Signal.handle(new Signal("HUP"), s -> new Thread(() -> {
            try {
                reload.run();
            } catch (RuntimeException e) {
                LoggerFactory.getLogger(Signals.class).error("reload failed", e);
            }
        }, "reload").start());
    }

    private static void onStop(Runnable stop, String name) {
        if (!STOPPING.compareAndSet(false, true)) {
            LoggerFactory.getLogger(Signals.class).warn("{} again: exiting now without waiting", name);
            Runtime.getRuntime().halt(1);
        }
        LoggerFactory.getLogger(Signals.class).info("{} received", name);
        new Thread(stop, "shutdown").start();
    }

    static void notifyReady(String status) {
        analytics.engine.server.SystemdNotify.ready(status);
    }

    static void notifyReloading() {
        analytics.engine.server.SystemdNotify.reloading();
    }

    static void notifyStopping() {
        analytics.engine.server.SystemdNotify.stopping();
    }
}
