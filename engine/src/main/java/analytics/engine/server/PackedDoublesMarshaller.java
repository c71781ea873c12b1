package analytics.engine.server;

import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.MessageLite;
import com.google.protobuf.Parser;
import io.grpc.HasByteBuffer;
import io.grpc.KnownLength;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.function.Function;

/**
 * The server's request marshaller for messages that carry big {@code repeated double} fields
 * ({@code AnalysisRequest.data/target}, {@code StreamChunk.data}).
 *
 * <p>Why: protobuf-java reads a packed {@code repeated double} one value at a time through
 * {@code CodedInputStream} into a growing primitive list, and the engine then copied that list value by
 * value into the {@code double[]} its kernels use; for 10^6 points that was most of the engine's time.
 * This marshaller walks the top-level fields of the received bytes once: the lifted fields are copied in
 * bulk (little-endian doubles straight into the final {@code double[]}, from the network buffers when gRPC
 * offers them as {@link ByteBuffer}s), every other field is copied verbatim, in order, into a small side
 * buffer that the generated parser then decodes. So the result is what the generated parser gives:
 *
 * <ul>
 *   <li>fields in any order, repeated and interleaved; a lifted field in several packed runs and/or
 *       non-packed (one value per tag) is the concatenation in wire order, as protobuf merges it;
 *   <li>a lifted field number with another wire type stays an unknown field, as in generated code;
 *   <li>unknown fields (groups included) reach the generated parser unchanged, so they are kept, and
 *       rejected when it rejects them (bad UTF-8, nesting over 100, mismatched end-group, ...);
 *   <li>malformed bytes (truncated, bad varint, field number 0, wire type 6/7, a packed run whose length
 *       is not a multiple of 8 or runs past the message) fail as gRPC's own protobuf marshaller fails:
 *       {@code INTERNAL "Invalid protobuf byte sequence"}.
 * </ul>
 * {@code PackedDoublesMarshallerTest} checks this equivalence against the generated parser.
 */
public final class PackedDoublesMarshaller<M extends MessageLite> implements MethodDescriptor.Marshaller<BulkMessage<M>> {

    private static final int WT_VARINT = 0;
    private static final int WT_FIXED64 = 1;
    private static final int WT_LEN = 2;
    private static final int WT_START_GROUP = 3;
    private static final int WT_END_GROUP = 4;
    private static final int WT_FIXED32 = 5;
    /** Scratch read size: small enough to stay in cache, large enough that per-read overhead is noise. */
    private static final int SCRATCH = 64 * 1024;
    /** Below this many bytes a run is copied through the scratch buffer rather than asking for ByteBuffers. */
    private static final int DIRECT_MIN_BYTES = 4096;
    private static final ThreadLocal<byte[]> SCRATCH_BUFFERS = ThreadLocal.withInitial(() -> new byte[SCRATCH]);

    private final Parser<M> parser;
    private final int[] fields;
    private final Function<BulkMessage<M>, M> merge;

    /**
     * @param parser the generated parser of {@code M}
     * @param fields the field numbers of the {@code repeated double} fields to lift out, in array order
     * @param merge  puts the arrays back into one message (for {@link #stream}, used by clients and tests)
     */
    public PackedDoublesMarshaller(Parser<M> parser, int[] fields, Function<BulkMessage<M>, M> merge) {
        this.parser = parser;
        this.fields = fields.clone();
        this.merge = merge;
    }

    @Override
    public InputStream stream(BulkMessage<M> value) {
        return new ByteArrayInputStream(merge.apply(value).toByteArray());
    }

    @Override
    public BulkMessage<M> parse(InputStream stream) {
        try {
            return decode(stream);
        } catch (InvalidProtocolBufferException e) {
            // The same status as grpc-protobuf's marshaller, so clients see no difference.
            throw Status.INTERNAL.withDescription("Invalid protobuf byte sequence").withCause(e).asRuntimeException();
        } catch (IOException e) {
            throw Status.INTERNAL.withDescription("cannot read request: " + e.getMessage()).withCause(e)
                    .asRuntimeException();
        }
    }

    /** Decodes one message; public for the equivalence test and benchmarks. */
    public BulkMessage<M> decode(InputStream stream) throws IOException {
        long t0 = System.nanoTime();
        Reader in = new Reader(stream);
        Lifted[] lifted = new Lifted[fields.length];
        for (int i = 0; i < lifted.length; i++) {
            lifted[i] = new Lifted();
        }
        Rest rest = new Rest();
        while (!in.atEnd()) {
            int tagStart = rest.size;
            int tag = in.readTag(rest);
            int number = tag >>> 3;
            int wireType = tag & 7;
            int slot = slotOf(number);
            if (slot >= 0 && wireType == WT_LEN) {
                rest.size = tagStart; // the tag goes to the array, not to the generated parser
                int length = in.readVarint32(null);
                if (length < 0) {
                    throw new InvalidProtocolBufferException("CodedInputStream encountered an embedded string or "
                            + "message which claimed to have negative size.");
                }
                if (length % 8 != 0) {
                    throw new InvalidProtocolBufferException("packed double field " + number + " has " + length
                            + " bytes, not a multiple of 8");
                }
                in.checkAvailable(length);
                lifted[slot].read(in, length / 8);
            } else if (slot >= 0 && wireType == WT_FIXED64) {
                rest.size = tagStart;
                in.checkAvailable(8);
                lifted[slot].read(in, 1);
            } else {
                copyField(in, tag, rest);
            }
        }
        double[][] arrays = new double[lifted.length][];
        for (int i = 0; i < lifted.length; i++) {
            arrays[i] = lifted[i].toArray();
        }
        M message = parser.parseFrom(rest.bytes, 0, rest.size);
        return new BulkMessage<>(message, arrays, System.nanoTime() - t0);
    }

    private int slotOf(int number) {
        for (int i = 0; i < fields.length; i++) {
            if (fields[i] == number) {
                return i;
            }
        }
        return -1;
    }

    /**
     * Copies the value of a field whose tag was already copied. Groups are copied up to their end tag,
     * iteratively (no recursion for hostile nesting); whether their nesting is acceptable is the generated
     * parser's decision.
     */
    private static void copyField(Reader in, int tag, Rest rest) throws IOException {
        int[] open = null; // field numbers of the groups being copied
        int depth = 0;
        while (true) {
            int number = tag >>> 3;
            switch (tag & 7) {
                case WT_VARINT -> in.copyVarint64(rest);
                case WT_FIXED64 -> in.copyBytes(8, rest);
                case WT_FIXED32 -> in.copyBytes(4, rest);
                case WT_LEN -> {
                    int length = in.readVarint32(rest);
                    if (length < 0) {
                        throw new InvalidProtocolBufferException("CodedInputStream encountered an embedded string "
                                + "or message which claimed to have negative size.");
                    }
                    in.copyBytes(length, rest);
                }
                case WT_START_GROUP -> {
                    if (open == null) {
                        open = new int[8];
                    } else if (depth == open.length) {
                        open = Arrays.copyOf(open, depth * 2);
                    }
                    open[depth++] = number;
                }
                case WT_END_GROUP -> {
                    if (depth == 0) {
                        // An end-group at top level: the generated parser stops there and rejects the
                        // message; leave that verdict to it.
                        return;
                    }
                    if (open[--depth] != number) {
                        throw new InvalidProtocolBufferException("Protocol message end-group tag did not match "
                                + "expected tag.");
                    }
                }
                default -> throw new InvalidProtocolBufferException("Protocol message tag had invalid wire type.");
            }
            if (depth == 0) {
                return;
            }
            if (in.atEnd()) {
                throw truncated();
            }
            tag = in.readTag(rest);
        }
    }

    static InvalidProtocolBufferException truncated() {
        return new InvalidProtocolBufferException("While parsing a protocol message, the input ended unexpectedly "
                + "in the middle of a field.  This could mean either that the input has been truncated or that an "
                + "embedded message misreported its own length.");
    }

    /** The bytes of the fields the generated parser decodes (small: everything but the big arrays). */
    private static final class Rest {
        byte[] bytes = new byte[256];
        int size;

        void ensure(int more) {
            if (size + more > bytes.length) {
                bytes = Arrays.copyOf(bytes, Math.max(bytes.length * 2, size + more));
            }
        }

        void put(byte b) {
            ensure(1);
            bytes[size++] = b;
        }
    }

    /** One lifted field: usually a single packed run, decoded into an array of exactly its size. */
    private static final class Lifted {
        private static final double[] NONE = new double[0];
        private static final int UNKNOWN_LENGTH_STEP = 1 << 16;
        double[] values = NONE;
        int count;

        void read(Reader in, int n) throws IOException {
            if (in.unread < 0 && n > UNKNOWN_LENGTH_STEP) {
                // The stream does not say how long it is (gRPC's always does): never allocate for a
                // claimed length before the bytes are there.
                for (int left = n; left > 0; left -= UNKNOWN_LENGTH_STEP) {
                    read(in, Math.min(left, UNKNOWN_LENGTH_STEP));
                }
                return;
            }
            if (count + n > values.length) {
                // First run: exact size (the common case, one run, then no trimming copy). Later runs
                // (rare: chunked or non-packed senders) grow geometrically.
                int capacity = count == 0 ? n : Math.max(count + n, (int) Math.min(Integer.MAX_VALUE - 8, values.length * 2L));
                values = Arrays.copyOf(values, capacity);
            }
            in.readDoubles(values, count, n);
            count += n;
        }

        double[] toArray() {
            return count == values.length ? values : Arrays.copyOf(values, count);
        }
    }

    /** A cursor over the received stream with a small scratch buffer (refilled, never the whole message). */
    private static final class Reader {
        private final InputStream in;
        private final HasByteBuffer direct;
        private final byte[] buf;
        private final ByteBuffer view;
        private int pos;
        private int lim;
        /** Bytes not yet read from {@code in}, when the stream knows it; -1 otherwise. */
        private long unread;

        Reader(InputStream in) throws IOException {
            this.in = in;
            this.direct = in instanceof HasByteBuffer h && h.byteBufferSupported() ? h : null;
            this.buf = SCRATCH_BUFFERS.get();
            this.view = ByteBuffer.wrap(buf).order(ByteOrder.LITTLE_ENDIAN);
            this.unread = in instanceof KnownLength ? in.available() : -1;
        }

        boolean atEnd() throws IOException {
            return pos >= lim && fill() <= 0;
        }

        /** Refills the (empty) scratch buffer; returns the bytes now available, -1 at the end. */
        private int fill() throws IOException {
            return fill(buf.length);
        }

        /** Refills the (empty) scratch buffer with at most {@code max} bytes. */
        private int fill(int max) throws IOException {
            pos = 0;
            lim = 0;
            int n = in.read(buf, 0, max);
            if (n > 0) {
                lim = n;
                if (unread >= 0) {
                    unread -= n;
                }
            }
            return n;
        }

        /** Rejects a length that runs past the message before allocating for it. */
        void checkAvailable(long length) throws InvalidProtocolBufferException {
            if (unread >= 0 && length > (lim - pos) + unread) {
                throw truncated();
            }
        }

        int readByte() throws IOException {
            if (pos >= lim && fill() <= 0) {
                throw truncated();
            }
            return buf[pos++];
        }

        /** A tag as CodedInputStream.readTag reads it (field number 0 is invalid). */
        int readTag(Rest copy) throws IOException {
            int tag = readVarint32(copy);
            if ((tag >>> 3) == 0) {
                throw new InvalidProtocolBufferException("Protocol message contained an invalid tag (zero).");
            }
            return tag;
        }

        /** CodedInputStream.readRawVarint32: up to 10 bytes, the low 32 bits kept; copied when copy != null. */
        int readVarint32(Rest copy) throws IOException {
            long result = 0;
            for (int shift = 0; shift < 70; shift += 7) {
                int b = readByte();
                if (copy != null) {
                    copy.put((byte) b);
                }
                if (shift < 32) {
                    result |= (long) (b & 0x7F) << shift;
                }
                if ((b & 0x80) == 0) {
                    return (int) result;
                }
            }
            throw new InvalidProtocolBufferException("CodedInputStream encountered a malformed varint.");
        }

        void copyVarint64(Rest copy) throws IOException {
            for (int i = 0; i < 10; i++) {
                int b = readByte();
                copy.put((byte) b);
                if ((b & 0x80) == 0) {
                    return;
                }
            }
            throw new InvalidProtocolBufferException("CodedInputStream encountered a malformed varint.");
        }

        void copyBytes(int length, Rest copy) throws IOException {
            checkAvailable(length);
            int left = length;
            while (left > 0) {
                if (pos >= lim && fill() <= 0) {
                    throw truncated();
                }
                int k = Math.min(left, lim - pos);
                copy.ensure(k);
                System.arraycopy(buf, pos, copy.bytes, copy.size, k);
                copy.size += k;
                pos += k;
                left -= k;
            }
        }

        /** Reads n little-endian doubles into dst[off..]: bulk copies, never one value at a time. */
        void readDoubles(double[] dst, int off, int n) throws IOException {
            while (n > 0) {
                int avail = lim - pos;
                if (avail >= 8) {
                    int k = Math.min(n, avail / 8);
                    view.position(pos);
                    view.asDoubleBuffer().get(dst, off, k);
                    pos += k * 8;
                    off += k;
                    n -= k;
                } else if (avail > 0) {
                    // A value split across two reads: move its first bytes to the front, complete it.
                    System.arraycopy(buf, pos, buf, 0, avail);
                    pos = 0;
                    lim = avail;
                    // On the direct path take only that value's bytes, then go back to direct copies.
                    int want = useDirect(n) ? 8 : buf.length;
                    while (lim < 8) {
                        int r = in.read(buf, lim, want - lim);
                        if (r <= 0) {
                            throw truncated();
                        }
                        lim += r;
                        if (unread >= 0) {
                            unread -= r;
                        }
                    }
                } else if (useDirect(n)) {
                    // When gRPC's current buffer ends inside a value (every 16 KiB DATA frame does, unless the
                    // array happens to start 8-aligned in it; k == 0), only that value's bytes go through the
                    // scratch buffer: a full scratch read would copy the next 64 KiB twice.
                    int k = readDirect(dst, off, n);
                    if (k > 0) {
                        off += k;
                        n -= k;
                    } else if (fill(k == 0 ? 8 : buf.length) <= 0) {
                        throw truncated();
                    }
                } else if (fill() <= 0) {
                    throw truncated();
                }
            }
        }

        private boolean useDirect(int n) {
            return direct != null && n * 8L >= DIRECT_MIN_BYTES;
        }

        /**
         * Copies whole doubles straight from gRPC's current network buffer (one copy, no scratch); 0 when
         * that buffer holds less than one value (then the scratch path completes that value), -1 when the
         * current buffer cannot be viewed as one ByteBuffer (then the scratch path reads on).
         */
        private int readDirect(double[] dst, int off, int n) throws IOException {
            ByteBuffer bb = direct.getByteBuffer();
            if (bb == null) {
                return -1;
            }
            if (bb.remaining() < 8) {
                return 0;
            }
            int k = Math.min(n, bb.remaining() / 8);
            bb.order(ByteOrder.LITTLE_ENDIAN).asDoubleBuffer().get(dst, off, k);
            long skipped = in.skip(k * 8L);
            if (skipped != k * 8L) {
                throw new IOException("stream skipped " + skipped + " of " + (k * 8L) + " bytes");
            }
            if (unread >= 0) {
                unread -= skipped;
            }
            return k;
        }
    }
}
