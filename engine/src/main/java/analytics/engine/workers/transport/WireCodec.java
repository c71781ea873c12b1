package analytics.engine.workers.transport;

import analytics.engine.api.AnalysisInput;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.msgpack.core.MessageBufferPacker;
import org.msgpack.core.MessagePack;
import org.msgpack.core.MessageUnpacker;
import org.msgpack.core.MessageFormat;
import org.msgpack.value.ValueType;

/**
 * Encoding and decoding of protocol frames (py-worker/PROTOCOL.md): a big-endian uint32 body length, then one
 * msgpack map. Requests are written straight into a direct {@link ByteBuf}: the small msgpack parts go through
 * a {@link MessageBufferPacker}, the float64 payload is bulk-copied from the {@code double[]} through a
 * little-endian {@link java.nio.DoubleBuffer} view of the ByteBuf's memory (no boxing, no intermediate byte[]).
 */
public final class WireCodec {

    private WireCodec() {
    }

    /** Thrown for a frame that violates the protocol; the message names length/type only, never the body. */
    public static final class ProtocolException extends IOException {
        public ProtocolException(String message) {
            super(message);
        }
    }

    /**
     * The request frame of {@code in} (length prefix included) under the id {@code id}. {@code dataFile} (if not
     * null) replaces the {@code data} bin by a {@code data_file} reference and {@code targetFile} (if not null)
     * replaces {@code target} by {@code target_file} (PROTOCOL.md, "Shared-memory hand-off"); the arrays in files
     * are not copied into the frame.
     */
    public static ByteBuf encodeRequest(ByteBufAllocator alloc, String id, AnalysisInput in, long timeoutMs,
                                        DataFile dataFile, DataFile targetFile) throws IOException {
        return encodeRequest(alloc, id, in, timeoutMs, dataFile, targetFile, false);
    }

    /**
     * As above; {@code progress} adds {@code "progress": true} (PROTOCOL.md revision 3): the worker then sends
     * progress frames while it computes. Only for a worker whose hello listed the {@code progress} feature.
     */
    public static ByteBuf encodeRequest(ByteBufAllocator alloc, String id, AnalysisInput in, long timeoutMs,
                                        DataFile dataFile, DataFile targetFile, boolean progress) throws IOException {
        String algorithm = in.algorithm();
        Map<String, String> params = in.params();
        double[] data = in.data();
        int rows = in.rows();
        int cols = in.cols();
        boolean matrix = in.matrix();
        double[] target = in.target();
        List<String> texts = in.texts();
        long dataBytes = 8L * rows * cols;
        long targetBytes = target == null ? 0 : 8L * target.length;
        if (dataFile != null && dataFile.nbytes() != dataBytes) {
            throw new IllegalArgumentException("data file holds " + dataFile.nbytes() + " bytes, shape needs " + dataBytes);
        }
        if (targetFile != null && (target == null || targetFile.nbytes() != targetBytes)) {
            throw new IllegalArgumentException("target file does not match the target");
        }
        if (dataBytes > Integer.MAX_VALUE - 64 || data.length != (long) rows * cols) {
            throw new IllegalArgumentException("data length " + data.length + " does not match shape " + rows + "x" + cols);
        }
        boolean hasTexts = texts != null && !texts.isEmpty();
        MessageBufferPacker pk = MessagePack.newDefaultBufferPacker();
        pk.packMapHeader(7 + (target != null ? 1 : 0) + (hasTexts ? 1 : 0) + (progress ? 1 : 0));
        pk.packString("type").packString("request");
        pk.packString("id").packString(id);
        pk.packString("algorithm").packString(algorithm);
        pk.packString("params");
        Map<String, String> p = params == null ? Map.of() : params;
        pk.packMapHeader(p.size());
        for (Map.Entry<String, String> e : p.entrySet()) {
            pk.packString(e.getKey()).packString(e.getValue() == null ? "" : e.getValue());
        }
        pk.packString("shape");
        if (matrix) {
            pk.packArrayHeader(2).packInt(rows).packInt(cols);
        } else {
            pk.packArrayHeader(1).packInt(rows);
        }
        pk.packString("timeout_ms").packLong(timeoutMs);
        if (progress) {
            pk.packString("progress").packBoolean(true);
        }
        if (dataFile != null) {
            packFileRef(pk, "data_file", dataFile);
        } else {
            pk.packString("data").packBinaryHeader((int) dataBytes);
        }
        byte[] head = pk.toByteArray();
        pk.clear();

        long estimate = 4L + head.length + (dataFile != null ? 0 : dataBytes) + (targetFile != null ? 64 : targetBytes) + 64;
        ByteBuf buf = alloc.directBuffer((int) Math.min(Integer.MAX_VALUE, estimate));
        boolean ok = false;
        try {
            buf.writeInt(0); // length placeholder
            buf.writeBytes(head);
            if (dataFile == null) {
                writeDoubles(buf, data);
            }
            if (targetFile != null) {
                packFileRef(pk, "target_file", targetFile);
                buf.writeBytes(pk.toByteArray());
                pk.clear();
            } else if (target != null) {
                pk.packString("target").packBinaryHeader((int) targetBytes);
                buf.writeBytes(pk.toByteArray());
                pk.clear();
                writeDoubles(buf, target);
            }
            if (hasTexts) {
                pk.packString("texts").packArrayHeader(texts.size());
                for (String t : texts) {
                    pk.packString(t == null ? "" : t);
                }
                buf.writeBytes(pk.toByteArray());
                pk.clear();
            }
            buf.setInt(0, buf.writerIndex() - 4);
            ok = true;
            return buf;
        } finally {
            pk.close();
            if (!ok) {
                buf.release();
            }
        }
    }

    private static void packFileRef(MessageBufferPacker pk, String key, DataFile f) throws IOException {
        pk.packString(key).packMapHeader(2);
        pk.packString("name").packString(f.name());
        pk.packString("nbytes").packLong(f.nbytes());
    }

    /** Bulk-copies doubles as little-endian float64 into buf at its writer index. */
    static void writeDoubles(ByteBuf buf, double[] values) {
        int bytes = values.length * 8;
        buf.ensureWritable(bytes);
        int at = buf.writerIndex();
        if (buf.nioBufferCount() == 1) {
            ByteBuffer view = buf.nioBuffer(at, bytes).order(ByteOrder.LITTLE_ENDIAN);
            view.asDoubleBuffer().put(values);
        } else {
            for (int i = 0; i < values.length; i++) {
                buf.setDoubleLE(at + 8 * i, values[i]);
            }
        }
        buf.writerIndex(at + bytes);
    }

    /** A ping frame; the worker answers with a pong carrying the same id and its RSS. */
    public static ByteBuf encodePing(ByteBufAllocator alloc, String id) throws IOException {
        Map<String, Object> m = new java.util.LinkedHashMap<>();
        m.put("type", "ping");
        m.put("id", id);
        return encodeSimple(alloc, m);
    }

    /** A cancel frame (revision 3): the worker stops request {@code id} and answers CANCELLED. */
    public static ByteBuf encodeCancel(ByteBufAllocator alloc, String id) throws IOException {
        Map<String, Object> m = new java.util.LinkedHashMap<>();
        m.put("type", "cancel");
        m.put("id", id);
        return encodeSimple(alloc, m);
    }

    /** A shutdown frame: the worker finishes and exits. */
    public static ByteBuf encodeShutdown(ByteBufAllocator alloc) throws IOException {
        return encodeSimple(alloc, Map.of("type", "shutdown"));
    }

    /** A small control message as a complete frame. */
    private static ByteBuf encodeSimple(ByteBufAllocator alloc, Map<String, Object> msg) throws IOException {
        try (MessageBufferPacker pk = MessagePack.newDefaultBufferPacker()) {
            pk.packMapHeader(msg.size());
            for (Map.Entry<String, Object> e : msg.entrySet()) {
                pk.packString(e.getKey());
                Object v = e.getValue();
                if (v instanceof String s) {
                    pk.packString(s);
                } else if (v instanceof Number n) {
                    pk.packLong(n.longValue());
                } else if (v instanceof Boolean b) {
                    pk.packBoolean(b);
                } else {
                    throw new IllegalArgumentException("unsupported value type for key " + e.getKey());
                }
            }
            byte[] body = pk.toByteArray();
            ByteBuf buf = alloc.directBuffer(4 + body.length);
            buf.writeInt(body.length);
            buf.writeBytes(body);
            return buf;
        }
    }

    /** Deepest nesting of msgpack arrays/maps accepted in a frame (the protocol needs 3). */
    static final int MAX_DEPTH = 32;

    /**
     * Decodes one frame body (without the length prefix) into a map with a string {@code type}.
     *
     * <p>Walks the msgpack stream itself instead of {@code unpackValue()}: every declared length (str, bin,
     * array, map) is checked against the bytes actually left in the frame before anything is allocated,
     * nesting is bounded, and strings must be valid UTF-8. Found by tests/fuzz.sh (Jazzer): a 40-byte frame
     * declaring a 2 GB str made msgpack-core allocate 2 GB; invalid UTF-8 escaped as an unchecked exception.
     */
    public static Map<String, Object> decode(ByteBuf body) throws ProtocolException {
        int len = body.readableBytes();
        if (len == 0) {
            throw new ProtocolException("empty frame (length 0)");
        }
        // msgpack-core reads direct ByteBuffers through sun.nio.ch (not exported on Java 17): decode from a heap
        // array. Frames from workers are responses (small) and control messages, so the copy is cheap.
        Object v;
        try (MessageUnpacker u = body.hasArray()
                ? MessagePack.newDefaultUnpacker(body.array(), body.arrayOffset() + body.readerIndex(), len)
                : MessagePack.newDefaultUnpacker(copy(body))) {
            if (u.getNextFormat().getValueType() != ValueType.MAP) {
                throw new ProtocolException("frame of " + len + " bytes is a msgpack "
                        + u.getNextFormat().getValueType() + ", not a map");
            }
            v = read(u, len, 0);
            if (u.hasNext()) {
                throw new ProtocolException("frame of " + len + " bytes has trailing data after the msgpack map");
            }
        } catch (ProtocolException e) {
            throw e;
        } catch (IOException | RuntimeException e) {
            throw new ProtocolException("frame of " + len + " bytes is not valid msgpack (" + e.getClass().getSimpleName() + ")");
        }
        @SuppressWarnings("unchecked")
        Map<String, Object> m = (Map<String, Object>) v;
        if (!(m.get("type") instanceof String)) {
            throw new ProtocolException("frame of " + len + " bytes has no string 'type'");
        }
        return m;
    }

    private static int checkedLength(MessageUnpacker u, long declared, long minBytesEach, int frameLen, String what)
            throws ProtocolException {
        long left = frameLen - u.getTotalReadBytes();
        if (declared < 0 || declared * minBytesEach > left) {
            throw new ProtocolException("frame of " + frameLen + " bytes declares a " + what + " of " + declared
                    + (minBytesEach == 1 && !what.equals("array") ? " bytes" : " entries") + " but only " + left
                    + " bytes remain");
        }
        return (int) declared;
    }

    private static Object read(MessageUnpacker u, int frameLen, int depth) throws IOException {
        MessageFormat f = u.getNextFormat();
        switch (f.getValueType()) {
            case NIL:
                u.unpackNil();
                return null;
            case BOOLEAN:
                return u.unpackBoolean();
            case INTEGER:
                if (f == MessageFormat.UINT64) {
                    java.math.BigInteger big = u.unpackBigInteger();
                    return big.bitLength() < 64 ? (Object) big.longValue() : big;
                }
                return u.unpackLong();
            case FLOAT:
                return u.unpackDouble();
            case STRING: {
                int n = checkedLength(u, u.unpackRawStringHeader() & 0xFFFFFFFFL, 1, frameLen, "str");
                byte[] raw = u.readPayload(n);
                try {
                    return StandardCharsets.UTF_8.newDecoder()
                            .onMalformedInput(CodingErrorAction.REPORT)
                            .onUnmappableCharacter(CodingErrorAction.REPORT)
                            .decode(ByteBuffer.wrap(raw)).toString();
                } catch (CharacterCodingException e) {
                    throw new ProtocolException("frame of " + frameLen + " bytes has a str that is not valid UTF-8");
                }
            }
            case BINARY: {
                int n = checkedLength(u, u.unpackBinaryHeader() & 0xFFFFFFFFL, 1, frameLen, "bin");
                return u.readPayload(n);
            }
            case ARRAY: {
                if (depth >= MAX_DEPTH) {
                    throw new ProtocolException("frame of " + frameLen + " bytes nests arrays/maps deeper than " + MAX_DEPTH);
                }
                int n = checkedLength(u, u.unpackArrayHeader() & 0xFFFFFFFFL, 1, frameLen, "array");
                List<Object> out = new ArrayList<>(n);
                for (int i = 0; i < n; i++) {
                    out.add(read(u, frameLen, depth + 1));
                }
                return out;
            }
            case MAP: {
                if (depth >= MAX_DEPTH) {
                    throw new ProtocolException("frame of " + frameLen + " bytes nests arrays/maps deeper than " + MAX_DEPTH);
                }
                int n = checkedLength(u, u.unpackMapHeader() & 0xFFFFFFFFL, 2, frameLen, "map");
                Map<String, Object> out = new LinkedHashMap<>();
                for (int i = 0; i < n; i++) {
                    if (u.getNextFormat().getValueType() != ValueType.STRING) {
                        throw new ProtocolException("map key of type " + u.getNextFormat().getValueType() + " (must be str)");
                    }
                    String key = (String) read(u, frameLen, depth + 1);
                    out.put(key, read(u, frameLen, depth + 1));
                }
                return out;
            }
            default:
                throw new ProtocolException("unsupported msgpack type " + f.getValueType());
        }
    }

    private static byte[] copy(ByteBuf b) {
        byte[] a = new byte[b.readableBytes()];
        b.getBytes(b.readerIndex(), a);
        return a;
    }
}
