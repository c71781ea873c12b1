package analytics.engine.server;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import analytics.engine.proto.AnalysisOptions;
import analytics.engine.proto.AnalysisRequest;
import analytics.engine.proto.AnalysisResponse;
import analytics.engine.proto.AnalyticsEngineGrpc;
import analytics.engine.proto.StreamChunk;
import com.google.protobuf.ByteString;
import com.google.protobuf.CodedOutputStream;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.MessageLite;
import com.google.protobuf.Parser;
import com.google.protobuf.UnknownFieldSet;
import io.grpc.CallOptions;
import io.grpc.KnownLength;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.internal.CompositeReadableBuffer;
import io.grpc.internal.ForwardingReadableBuffer;
import io.grpc.internal.ReadableBuffer;
import io.grpc.internal.ReadableBuffers;
import io.grpc.stub.ClientCalls;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.function.Function;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

/**
 * The server's bulk request decoding ({@link PackedDoublesMarshaller}) against the generated parser: for
 * every input, both reject it or both accept it, and then the lifted arrays are bit for bit the generated
 * message's {@code data}/{@code target} and the rest of the message (unknown fields included) is equal.
 * Inputs: random valid messages re-encoded in every legal layout (packed runs split, non-packed values,
 * fields interleaved and repeated, unknown fields and groups, a lifted field number with another wire
 * type), adversarial mutations of those (truncation, flipped/inserted bytes, huge lengths), random bytes
 * and the committed fuzz corpus. Each input is fed as a plain stream, as a KnownLength stream returning
 * a few bytes per read, and as gRPC's own buffer stream split at random points (the ByteBuffer path; some
 * of its parts give no ByteBuffer view, as a Netty buffer spanning two reads does).
 */
class PackedDoublesMarshallerTest {

    static final long SEED = 20261128L;
    static final int CASES = Integer.getInteger("marshaller.cases", 20_000);

    final PackedDoublesMarshaller<AnalysisRequest> requests = AnalyticsService.requestMarshaller();
    final PackedDoublesMarshaller<StreamChunk> chunks = AnalyticsService.chunkMarshaller();

    // ------------------------------------------------------------ the oracle

    /** Checks one input against the generated parser, through each kind of stream. */
    static <M extends MessageLite> void check(byte[] bytes, Parser<M> parser, PackedDoublesMarshaller<M> marshaller,
                                              Function<M, M> withoutArrays, Function<M, double[][]> arraysOf,
                                              Random r, String what) {
        M expected;
        try {
            expected = parser.parseFrom(bytes);
        } catch (InvalidProtocolBufferException e) {
            expected = null;
        }
        for (int kind = 0; kind < 3; kind++) {
            InputStream in = switch (kind) {
                case 0 -> new ByteArrayInputStream(bytes);
                case 1 -> new Trickle(bytes, 1 + r.nextInt(13));
                default -> grpcBuffers(bytes, r);
            };
            BulkMessage<M> actual;
            try {
                actual = marshaller.parse(in);
            } catch (StatusRuntimeException e) {
                if (expected != null) {
                    throw new AssertionError(what + " (stream kind " + kind + "): generated parser accepts, "
                            + "bulk decoder rejects: " + e.getStatus(), e);
                }
                // Rejected as gRPC's protobuf marshaller rejects: INTERNAL "Invalid protobuf byte sequence".
                assertEquals(Status.Code.INTERNAL, e.getStatus().getCode(), what);
                assertEquals("Invalid protobuf byte sequence", e.getStatus().getDescription(), what);
                continue;
            }
            if (expected == null) {
                fail(what + " (stream kind " + kind + "): generated parser rejects, bulk decoder accepts "
                        + actual.message());
            }
            assertEquals(withoutArrays.apply(expected), actual.message(), what + " (stream kind " + kind + ")");
            double[][] want = arraysOf.apply(expected);
            for (int i = 0; i < want.length; i++) {
                assertBitsEqual(want[i], actual.array(i), what + " array " + i + " (stream kind " + kind + ")");
            }
        }
    }

    static void assertBitsEqual(double[] want, double[] got, String what) {
        assertEquals(want.length, got.length, what + ": length");
        for (int i = 0; i < want.length; i++) {
            if (Double.doubleToRawLongBits(want[i]) != Double.doubleToRawLongBits(got[i])) {
                fail(what + "[" + i + "]: " + want[i] + " != " + got[i] + " (raw bits)");
            }
        }
    }

    void checkRequest(byte[] bytes, Random r, String what) {
        check(bytes, AnalysisRequest.parser(), requests, m -> m.toBuilder().clearData().clearTarget().build(),
                m -> new double[][] {toArray(m.getDataList()), toArray(m.getTargetList())}, r, what);
    }

    void checkChunk(byte[] bytes, Random r, String what) {
        check(bytes, StreamChunk.parser(), chunks, m -> m.toBuilder().clearData().build(),
                m -> new double[][] {toArray(m.getDataList())}, r, what);
    }

    static double[] toArray(List<Double> l) {
        double[] a = new double[l.size()];
        for (int i = 0; i < a.length; i++) {
            a[i] = l.get(i);
        }
        return a;
    }

    /** A KnownLength stream that returns at most {@code step} bytes per read (boundaries everywhere). */
    static final class Trickle extends InputStream implements KnownLength {
        private final byte[] b;
        private final int step;
        private int pos;

        Trickle(byte[] b, int step) {
            this.b = b;
            this.step = step;
        }

        @Override
        public int read() {
            return pos < b.length ? b[pos++] & 0xFF : -1;
        }

        @Override
        public int read(byte[] dst, int off, int len) {
            if (pos >= b.length) {
                return -1;
            }
            int n = Math.min(Math.min(len, step), b.length - pos);
            System.arraycopy(b, pos, dst, off, n);
            pos += n;
            return n;
        }

        @Override
        public int available() {
            return b.length - pos;
        }
    }

    /** The stream gRPC hands a marshaller: a composite of (direct) network buffers, split at random. */
    static InputStream grpcBuffers(byte[] bytes, Random r) {
        CompositeReadableBuffer composite = new CompositeReadableBuffer();
        int pos = 0;
        while (pos < bytes.length) {
            int n = Math.min(bytes.length - pos, 1 + r.nextInt(r.nextBoolean() ? 17 : 40_000));
            ByteBuffer bb = ByteBuffer.allocateDirect(n);
            bb.put(bytes, pos, n).flip();
            ReadableBuffer part = ReadableBuffers.wrap(bb);
            // Like a Netty buffer that spans two network reads: it supports ByteBuffers, but cannot give
            // one view of itself (getByteBuffer() == null), so the decoder reads it through its scratch buffer.
            composite.addBuffer(r.nextInt(4) == 0 ? new ForwardingReadableBuffer(part) {
                @Override
                public ByteBuffer getByteBuffer() {
                    return null;
                }
            } : part);
            pos += n;
        }
        return ReadableBuffers.openStream(composite, true);
    }

    // ------------------------------------------------------------ generators

    static double value(Random r) {
        return switch (r.nextInt(6)) {
            case 0 -> Double.longBitsToDouble(r.nextLong()); // any bit pattern: NaN payloads, subnormals, -0
            case 1 -> r.nextBoolean() ? Double.NaN : Double.POSITIVE_INFINITY;
            case 2 -> -0.0;
            default -> r.nextGaussian() * 1000;
        };
    }

    static double[] values(Random r) {
        int n = switch (r.nextInt(10)) {
            case 0 -> 0;
            case 1 -> 20_000 + r.nextInt(20_000); // several scratch buffers' worth
            default -> r.nextInt(300);
        };
        double[] a = new double[n];
        for (int i = 0; i < n; i++) {
            a[i] = value(r);
        }
        return a;
    }

    static String text(Random r) {
        StringBuilder b = new StringBuilder();
        int n = r.nextInt(12);
        for (int i = 0; i < n; i++) {
            b.appendCodePoint(r.nextInt(4) == 0 ? 0x1F300 + r.nextInt(200) : 0x20 + r.nextInt(0x5F));
        }
        return b.toString();
    }

    static UnknownFieldSet unknown(Random r) {
        UnknownFieldSet.Builder u = UnknownFieldSet.newBuilder();
        int n = r.nextInt(3);
        for (int i = 0; i < n; i++) {
            int number = 13 + r.nextInt(5000);
            UnknownFieldSet.Field.Builder f = UnknownFieldSet.Field.newBuilder();
            switch (r.nextInt(5)) {
                case 0 -> f.addVarint(r.nextLong());
                case 1 -> f.addFixed32(r.nextInt());
                case 2 -> f.addFixed64(r.nextLong());
                case 3 -> f.addLengthDelimited(ByteString.copyFrom(new byte[r.nextInt(50)]));
                default -> f.addGroup(UnknownFieldSet.newBuilder().addField(3,
                        UnknownFieldSet.Field.newBuilder().addFixed64(r.nextLong()).build()).build());
            }
            u.addField(number, f.build());
        }
        return u.build();
    }

    /** The fields of a random request other than data/target, each as its own encoded bytes. */
    static List<byte[]> otherFields(Random r) throws IOException {
        AnalysisRequest.Builder b = AnalysisRequest.newBuilder();
        if (r.nextBoolean()) {
            b.setRequestId(text(r));
        }
        b.setAlgorithm(r.nextBoolean() ? "mean" : text(r));
        for (int i = r.nextInt(3); i > 0; i--) {
            b.putParams(text(r), text(r));
        }
        if (r.nextBoolean()) {
            b.setOptions(AnalysisOptions.newBuilder().setPreferRust(r.nextBoolean()).setAllowPython(r.nextBoolean())
                    .setTimeoutMs(r.nextInt(100_000)).setIncludeMetadata(r.nextBoolean()));
        }
        for (int i = r.nextInt(3); i > 0; i--) {
            b.addShape(r.nextInt(5) == 0 ? r.nextLong() : r.nextInt(1000));
        }
        for (int i = r.nextInt(3); i > 0; i--) {
            b.addTexts(text(r));
        }
        b.setUnknownFields(unknown(r));
        // Split the message into its fields (each field's bytes on its own) by re-reading it.
        List<byte[]> out = new ArrayList<>();
        for (var e : b.build().getAllFields().entrySet()) {
            AnalysisRequest.Builder one = AnalysisRequest.newBuilder().setField(e.getKey(), e.getValue());
            out.add(one.build().toByteArray());
        }
        for (var e : b.getUnknownFields().asMap().entrySet()) {
            out.add(UnknownFieldSet.newBuilder().addField(e.getKey(), e.getValue()).build().toByteArray());
        }
        return out;
    }

    /** A double field encoded in a random legal layout: packed runs and/or single non-packed values. */
    static List<byte[]> layout(int field, double[] values, Random r) throws IOException {
        List<byte[]> parts = new ArrayList<>();
        int i = 0;
        while (i < values.length) {
            if (r.nextInt(8) == 0) {
                ByteArrayOutputStream bo = new ByteArrayOutputStream();
                CodedOutputStream c = CodedOutputStream.newInstance(bo);
                c.writeDouble(field, values[i++]); // non-packed
                c.flush();
                parts.add(bo.toByteArray());
            } else {
                int n = r.nextInt(4) == 0 ? values.length - i : 1 + r.nextInt(values.length - i);
                parts.add(packedRun(field, Arrays.copyOfRange(values, i, i + n)));
                i += n;
            }
        }
        if (r.nextInt(10) == 0) {
            parts.add(packedRun(field, new double[0])); // an empty packed run is legal
        }
        return parts;
    }

    static byte[] packedRun(int field, double[] v) throws IOException {
        ByteArrayOutputStream bo = new ByteArrayOutputStream();
        CodedOutputStream c = CodedOutputStream.newInstance(bo);
        c.writeTag(field, 2);
        c.writeUInt32NoTag(v.length * 8);
        for (double d : v) {
            c.writeDoubleNoTag(d);
        }
        c.flush();
        return bo.toByteArray();
    }

    /** A lifted field number with a wire type that is not double: an unknown field for protobuf. */
    static byte[] wrongWireType(int field, Random r) throws IOException {
        ByteArrayOutputStream bo = new ByteArrayOutputStream();
        CodedOutputStream c = CodedOutputStream.newInstance(bo);
        switch (r.nextInt(3)) {
            case 0 -> c.writeInt64(field, r.nextLong());
            case 1 -> c.writeFixed32(field, r.nextInt());
            default -> {
                c.writeTag(field, 3);
                c.writeDouble(field, 1.5);
                c.writeTag(field, 4);
            }
        }
        c.flush();
        return bo.toByteArray();
    }

    static byte[] concatShuffled(List<byte[]> parts, Random r) {
        java.util.Collections.shuffle(parts, r);
        ByteArrayOutputStream bo = new ByteArrayOutputStream();
        for (byte[] p : parts) {
            bo.writeBytes(p);
        }
        return bo.toByteArray();
    }

    /** Concatenates keeping the relative order of each list (values order matters), interleaving lists. */
    static byte[] interleave(List<List<byte[]>> lists, Random r) {
        List<List<byte[]>> open = new ArrayList<>();
        for (List<byte[]> l : lists) {
            if (!l.isEmpty()) {
                open.add(new ArrayList<>(l));
            }
        }
        ByteArrayOutputStream bo = new ByteArrayOutputStream();
        while (!open.isEmpty()) {
            List<byte[]> l = open.get(r.nextInt(open.size()));
            bo.writeBytes(l.remove(0));
            if (l.isEmpty()) {
                open.remove(l);
            }
        }
        return bo.toByteArray();
    }

    byte[] randomRequest(Random r) throws IOException {
        List<byte[]> others = otherFields(r);
        if (r.nextInt(5) == 0) {
            others.add(wrongWireType(r.nextBoolean() ? 3 : 11, r));
        }
        java.util.Collections.shuffle(others, r);
        List<List<byte[]>> lists = new ArrayList<>();
        for (byte[] o : others) {
            lists.add(List.of(o));
        }
        lists.add(layout(3, values(r), r));
        if (r.nextInt(3) == 0) {
            lists.add(layout(11, values(r), r));
        }
        return interleave(lists, r);
    }

    static byte[] mutate(byte[] b, Random r) {
        if (b.length == 0) {
            return new byte[] {(byte) r.nextInt(256)};
        }
        byte[] m;
        switch (r.nextInt(5)) {
            case 0 -> m = Arrays.copyOf(b, r.nextInt(b.length)); // truncated
            case 1 -> {
                m = b.clone();
                for (int k = 1 + r.nextInt(3); k > 0; k--) {
                    m[r.nextInt(m.length)] ^= (byte) (1 << r.nextInt(8));
                }
            }
            case 2 -> {
                int at = r.nextInt(b.length + 1);
                byte[] junk = new byte[1 + r.nextInt(6)];
                r.nextBytes(junk);
                m = new byte[b.length + junk.length];
                System.arraycopy(b, 0, m, 0, at);
                System.arraycopy(junk, 0, m, at, junk.length);
                System.arraycopy(b, at, m, at + junk.length, b.length - at);
            }
            case 3 -> {
                // a lifted field whose length claims far more than the message has, or is not a multiple of 8
                ByteArrayOutputStream bo = new ByteArrayOutputStream();
                bo.writeBytes(b);
                bo.write(r.nextBoolean() ? 0x1A : 0x5A); // field 3 or 11, wire type 2
                int len = r.nextBoolean() ? 0x7FFFFFF8 : 1 + r.nextInt(7);
                while ((len & ~0x7F) != 0) {
                    bo.write((len & 0x7F) | 0x80);
                    len >>>= 7;
                }
                bo.write(len);
                bo.writeBytes(new byte[r.nextInt(12)]);
                m = bo.toByteArray();
            }
            default -> {
                // group trouble: unmatched end group, deep nesting, start without end
                ByteArrayOutputStream bo = new ByteArrayOutputStream();
                bo.writeBytes(b);
                int depth = r.nextInt(3) == 0 ? 101 + r.nextInt(5) : 1 + r.nextInt(4);
                for (int i = 0; i < depth; i++) {
                    bo.write(0xA3); // field 20, start group
                    bo.write(0x01);
                }
                int close = r.nextInt(3) == 0 ? depth - 1 : depth;
                for (int i = 0; i < close; i++) {
                    bo.write(r.nextInt(20) == 0 ? 0xAC : 0xA4); // end group, occasionally the wrong field
                    bo.write(0x01);
                }
                m = bo.toByteArray();
            }
        }
        return m;
    }

    // ------------------------------------------------------------ tests

    @Test
    void randomAndAdversarialRequestsDecodeAsTheGeneratedParserDoes() throws IOException {
        Random r = new Random(SEED);
        int rejected = 0;
        for (int i = 0; i < CASES; i++) {
            byte[] bytes = randomRequest(r);
            checkRequest(bytes, r, "case " + i);
            byte[] bad = mutate(bytes, r);
            checkRequest(bad, r, "mutated case " + i);
            try {
                AnalysisRequest.parseFrom(bad);
            } catch (InvalidProtocolBufferException e) {
                rejected++;
            }
        }
        // The mutations must really exercise the rejection path, or this test proves half of its claim.
        assertTrue(rejected > CASES / 5, "mutations rejected by protobuf: " + rejected);
    }

    @Test
    void randomBytesAndChunksDecodeAsTheGeneratedParserDoes() throws IOException {
        Random r = new Random(SEED + 1);
        for (int i = 0; i < CASES / 4; i++) {
            byte[] junk = new byte[r.nextInt(64)];
            r.nextBytes(junk);
            checkRequest(junk, r, "random bytes " + i);
            StreamChunk.Builder c = StreamChunk.newBuilder().setAlgorithm(text(r));
            for (double v : values(r)) {
                c.addData(v);
            }
            byte[] chunk = c.build().toByteArray();
            checkChunk(chunk, r, "chunk " + i);
            checkChunk(mutate(chunk, r), r, "mutated chunk " + i);
            checkChunk(concatShuffled(new ArrayList<>(layout(5, values(r), r)), r), r, "chunk layout " + i);
        }
    }

    @Test
    void fuzzCorpusDecodesAsTheGeneratedParserDoes() throws IOException {
        Path dir = Path.of(System.getProperty("analytics.repo.root", ".."), "tests", "fuzz", "corpus", "validator");
        Random r = new Random(SEED + 2);
        List<Path> files;
        try (Stream<Path> s = Files.list(dir)) {
            files = s.filter(Files::isRegularFile).sorted().toList();
        }
        assertTrue(files.size() >= 10, "corpus " + dir + " has inputs");
        for (Path p : files) {
            byte[] b = Files.readAllBytes(p);
            checkRequest(b, r, p.getFileName().toString());
            if (b.length > 0) {
                checkRequest(Arrays.copyOfRange(b, 1, b.length), r, p.getFileName() + " without its first byte");
            }
        }
    }

    @Test
    void oneBigPackedRunIsDecodedIntoAnArrayOfExactlyItsSize() throws IOException {
        double[] v = new double[1_000_003];
        Random r = new Random(SEED + 3);
        for (int i = 0; i < v.length; i++) {
            v[i] = r.nextGaussian();
        }
        AnalysisRequest.Builder b = AnalysisRequest.newBuilder().setAlgorithm("mean");
        for (double d : v) {
            b.addData(d);
        }
        byte[] bytes = b.build().toByteArray();
        BulkMessage<AnalysisRequest> m = requests.parse(grpcBuffers(bytes, r));
        assertBitsEqual(v, m.array(0), "data");
        assertEquals(0, m.array(1).length);
        assertEquals(0, m.message().getDataCount(), "data is not also left in the message");
        assertEquals("mean", m.message().getAlgorithm());
    }

    @Test
    void theServerDecodesAnalyzeAndAnalyzeStreamWithTheBulkMarshaller() throws Exception {
        try (TestEngine engine = new TestEngine()) {
            var services = engine.server.servicesForTest();
            var service = services.stream().filter(s -> s.getServiceDescriptor().getName().equals(
                    AnalyticsEngineGrpc.SERVICE_NAME)).findFirst().orElseThrow();
            // AnalyzeStream's chunks through this marshaller; Analyze's requests through it too, wrapped by
            // Received (which decodes big ones later, with it: ReceivedTest)
            var stream = service.getMethod(AnalyticsEngineGrpc.getAnalyzeStreamMethod().getFullMethodName());
            assertNotNull(stream);
            assertSame(PackedDoublesMarshaller.class, stream.getMethodDescriptor().getRequestMarshaller().getClass());
            var analyze = service.getMethod(AnalyticsEngineGrpc.getAnalyzeMethod().getFullMethodName());
            assertNotNull(analyze);
            assertSame(Received.RequestMarshaller.class, analyze.getMethodDescriptor().getRequestMarshaller().getClass());

            // Non-packed data in two runs plus one single value, sent as raw bytes: mean of 1..5 = 3.
            byte[] raw = concat(AnalysisRequest.newBuilder().setRequestId("np").setAlgorithm("mean").build()
                    .toByteArray(), packedRun(3, new double[] {1, 2}), single(3, 3), packedRun(3, new double[] {4, 5}));
            AnalysisResponse resp = ClientCalls.blockingUnaryCall(engine.channel,
                    rawMethod(AnalyticsEngineGrpc.getAnalyzeMethod()), CallOptions.DEFAULT, raw);
            assertTrue(resp.getSuccess(), resp.getErrorMessage());
            assertEquals("3.0", resp.getResultJson());
            assertEquals(5, resp.getMetadata().getDataSize());

            // Malformed bytes: the same status as a method still decoded by gRPC's protobuf marshaller.
            byte[] truncated = {0x1A, 0x09, 1, 2, 3};
            StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> ClientCalls.blockingUnaryCall(
                    engine.channel, rawMethod(AnalyticsEngineGrpc.getAnalyzeMethod()), CallOptions.DEFAULT, truncated));
            StatusRuntimeException generated = assertThrows(StatusRuntimeException.class, () -> ClientCalls.blockingUnaryCall(
                    engine.channel, rawMethod(AnalyticsEngineGrpc.getHealthCheckMethod()), CallOptions.DEFAULT, truncated));
            assertEquals(generated.getStatus().getCode(), e.getStatus().getCode());
            assertEquals(generated.getStatus().getDescription(), e.getStatus().getDescription());
        }
    }

    static byte[] single(int field, double v) throws IOException {
        ByteArrayOutputStream bo = new ByteArrayOutputStream();
        CodedOutputStream c = CodedOutputStream.newInstance(bo);
        c.writeDouble(field, v);
        c.flush();
        return bo.toByteArray();
    }

    static byte[] concat(byte[]... parts) {
        ByteArrayOutputStream bo = new ByteArrayOutputStream();
        for (byte[] p : parts) {
            bo.writeBytes(p);
        }
        return bo.toByteArray();
    }

    /** A unary method with the request sent as given bytes (no client-side serialisation). */
    static <Q, R> MethodDescriptor<byte[], R> rawMethod(MethodDescriptor<Q, R> m) {
        return m.toBuilder(new MethodDescriptor.Marshaller<byte[]>() {
            @Override
            public InputStream stream(byte[] value) {
                return new ByteArrayInputStream(value);
            }

            @Override
            public byte[] parse(InputStream stream) {
                throw new UnsupportedOperationException();
            }
        }, m.getResponseMarshaller()).build();
    }
}
