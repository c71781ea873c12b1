package analytics.engine.workers;

import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import analytics.engine.workers.WorkerHandle.RetireReason;
import analytics.engine.workers.launch.LaunchSpec;
import analytics.engine.workers.launch.LaunchedProcess;
import analytics.engine.workers.launch.WorkerLauncher;
import analytics.engine.workers.transport.WorkerSocketServer;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.msgpack.core.MessageBufferPacker;
import org.msgpack.core.MessagePack;

/**
 * A forked worker can say hello before its launcher has returned the process (the fork server learns the pid
 * from its template after the child already runs). The worker must still reach the pool: it is offered once
 * its process is known. Here the launcher itself sends the hello and waits until the supervisor has accepted it
 * before it returns, so the order is forced, not hoped for; the pool's part is played by the events, which poll
 * the ready queue at once as {@link PooledWorkers} does.
 */
class HelloBeforeLaunchTest {

    @TempDir
    Path dir;

    @Test
    void aWorkerWhoseHelloCameBeforeItsProcessIsStillLent() throws Exception {
        Path sock = dir.resolve("workers.sock");
        ScheduledThreadPoolExecutor scheduler = new ScheduledThreadPoolExecutor(2);
        AtomicReference<WorkerHandle> polled = new AtomicReference<>();
        CountDownLatch offered = new CountDownLatch(1);
        AtomicReference<WorkerSupervisor> sup = new AtomicReference<>();
        WorkerSupervisor.Events events = new WorkerSupervisor.Events() {
            @Override
            public void workerReady(WorkerHandle h) {
                polled.set(sup.get().pollReady());
                offered.countDown();
            }

            @Override
            public void workerCrashed(WorkerHandle h, String description, boolean duringStartup) {
            }

            @Override
            public void workerRestarted(WorkerHandle h) {
            }

            @Override
            public void workerRetired(WorkerHandle h, RetireReason reason) {
            }
        };
        SocketChannel[] worker = new SocketChannel[1];
        WorkerLauncher launcher = new WorkerLauncher() {
            @Override
            public LaunchedProcess launch(LaunchSpec spec) throws java.io.IOException {
                worker[0] = SocketChannel.open(StandardProtocolFamily.UNIX);
                worker[0].connect(UnixDomainSocketAddress.of(sock));
                worker[0].write(helloFrame(spec.token()));
                WorkerHandle h = sup.get().slots[spec.workerId()].current;
                try {
                    h.readyFuture.get(10, TimeUnit.SECONDS); // the hello is accepted before the process is known
                } catch (Exception e) {
                    throw new java.io.IOException("hello not accepted: " + e, e);
                }
                return new FakeProcess();
            }

            @Override
            public String describe() {
                return "test";
            }

            @Override
            public void close() {
            }
        };
        WorkerPoolConfig config = WorkerPoolConfig.defaults(null).withWorkers(1);
        WorkerSupervisor supervisor = new WorkerSupervisor(config, launcher, scheduler, events);
        sup.set(supervisor);
        WorkerSocketServer server = new WorkerSocketServer(sock, config.maxFrameBytes(), Duration.ofSeconds(10),
                supervisor.connections);
        try {
            supervisor.startAll();
            assertTrue(offered.await(20, TimeUnit.SECONDS), "the worker was never offered to the pool");
            WorkerHandle h = polled.get();
            assertNotNull(h, "the pool found no usable worker in the ready queue: it was offered before its process");
            assertSame(supervisor.slots[0].current, h);
            assertTrue(h.usable());
        } finally {
            if (worker[0] != null) {
                worker[0].close();
            }
            server.close();
            scheduler.shutdownNow();
            Files.deleteIfExists(sock);
        }
    }

    private static ByteBuffer helloFrame(String token) throws java.io.IOException {
        MessageBufferPacker p = MessagePack.newDefaultBufferPacker();
        p.packMapHeader(4);
        p.packString("type").packString("hello");
        p.packString("token").packString(token);
        p.packString("protocol").packLong(WorkerConnections.PROTOCOL_VERSION);
        p.packString("pid").packLong(ProcessHandle.current().pid());
        byte[] body = p.toByteArray();
        return ByteBuffer.allocate(4 + body.length).putInt(body.length).put(body).flip();
    }

    /** Stands for the worker process: alive until the test ends. */
    private static final class FakeProcess implements LaunchedProcess {
        private final CompletableFuture<String> exited = new CompletableFuture<>();

        @Override
        public long pid() {
            return ProcessHandle.current().pid();
        }

        @Override
        public CompletableFuture<String> exited() {
            return exited;
        }

        @Override
        public boolean isAlive() {
            return !exited.isDone();
        }

        @Override
        public void terminate() {
            exited.complete("terminated");
        }

        @Override
        public void kill() {
            exited.complete("killed");
        }
    }
}
