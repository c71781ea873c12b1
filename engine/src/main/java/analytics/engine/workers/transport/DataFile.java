package analytics.engine.workers.transport;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.DoubleBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.SecureRandom;
import java.util.HexFormat;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A float64 array handed to a worker through a file of the pool's private runtime directory instead of msgpack
 * bytes (py-worker/PROTOCOL.md, {@code data_file}). The worker maps it read-only without copying. The file holds
 * raw little-endian float64, is created {@code 0600} with {@code CREATE_NEW} (never follows or reuses an existing
 * file) and is written through a reused direct buffer (no boxing, no byte[] of the whole array, no mapping whose
 * lifetime would depend on the GC). {@link #delete()} is idempotent; the pool calls it when the attempt ends,
 * whatever the outcome.
 */
public final class DataFile {

    /** Names of data files start with this; {@link #sweep} removes leftovers with it (e.g. after kill -9 of the JVM). */
    public static final String PREFIX = "arr-";
    public static final String SUFFIX = ".f64";
    private static final int CHUNK = 1 << 20;
    private static final AtomicLong COUNTER = new AtomicLong();
    private static final String SESSION;
    private static final ThreadLocal<ByteBuffer> BUFFERS =
            ThreadLocal.withInitial(() -> ByteBuffer.allocateDirect(CHUNK).order(ByteOrder.LITTLE_ENDIAN));

    static {
        byte[] r = new byte[6];
        new SecureRandom().nextBytes(r);
        SESSION = HexFormat.of().formatHex(r);
    }

    private final Path path;
    private final long nbytes;
    private final AtomicBoolean deleted = new AtomicBoolean();

    private DataFile(Path path, long nbytes) {
        this.path = path;
        this.nbytes = nbytes;
    }

    /** Writes {@code values} into a new file of {@code dir}; on failure nothing is left behind. */
    public static DataFile write(Path dir, double[] values) throws IOException {
        String name = PREFIX + SESSION + "-" + COUNTER.incrementAndGet() + SUFFIX;
        Path p = dir.resolve(name);
        DataFile f = new DataFile(p, 8L * values.length);
        boolean ok = false;
        try (FileChannel ch = FileChannel.open(p, java.util.Set.of(StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE),
                PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rw-------")))) {
            ByteBuffer buf = BUFFERS.get().clear(); // full capacity: a previous call leaves a shorter limit
            DoubleBuffer dv = buf.asDoubleBuffer(); // inherits LITTLE_ENDIAN from buf
            int per = CHUNK / 8;
            for (int at = 0; at < values.length; at += per) {
                int n = Math.min(per, values.length - at);
                dv.clear();
                dv.put(values, at, n);
                buf.clear().limit(8 * n);
                while (buf.hasRemaining()) {
                    ch.write(buf);
                }
            }
            ok = true;
        } finally {
            if (!ok) {
                f.delete();
            }
        }
        return f;
    }

    /** The file name only (what goes into the frame; the worker joins it with the runtime directory). */
    public String name() {
        return path.getFileName().toString();
    }

    public long nbytes() {
        return nbytes;
    }

    public Path path() {
        return path;
    }

    /** Removes the file (once; a worker that still maps it keeps its pages until it unmaps). */
    public void delete() {
        if (deleted.compareAndSet(false, true)) {
            try {
                Files.deleteIfExists(path);
            } catch (IOException ignored) {
                // the runtime dir is swept on close/start
            }
        }
    }

    /** Deletes leftover data files in {@code dir} (start-up after a crash, close); returns how many. */
    public static int sweep(Path dir) {
        int n = 0;
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir, PREFIX + "*" + SUFFIX)) {
            for (Path p : ds) {
                if (Files.isRegularFile(p, java.nio.file.LinkOption.NOFOLLOW_LINKS) && Files.deleteIfExists(p)) {
                    n++;
                }
            }
        } catch (IOException ignored) {
            // nothing to sweep
        }
        return n;
    }
}
