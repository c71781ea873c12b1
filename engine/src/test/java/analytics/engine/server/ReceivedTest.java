package analytics.engine.server;

import static analytics.engine.server.PackedDoublesMarshallerTest.assertBitsEqual;
import static analytics.engine.server.PackedDoublesMarshallerTest.grpcBuffers;
import static analytics.engine.server.PackedDoublesMarshallerTest.rawMethod;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import analytics.engine.proto.AnalysisRequest;
import analytics.engine.proto.AnalysisResponse;
import analytics.engine.proto.AnalyticsEngineGrpc;
import analytics.engine.stats.NativeStatistics;
import com.google.protobuf.InvalidProtocolBufferException;
import io.grpc.CallOptions;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.internal.CompositeReadableBuffer;
import io.grpc.internal.ForwardingReadableBuffer;
import io.grpc.internal.ReadableBuffers;
import io.grpc.stub.ClientCalls;
import java.io.ByteArrayInputStream;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/**
 * {@link Received}: big Analyze requests leave gRPC's network buffers undecoded and are decoded, later and
 * on another thread, exactly as the bulk decoder decodes them at once; the buffers are given back either way;
 * small ones are decoded on arrival. End to end: big requests, valid and malformed, get the answer and the
 * status that a request decoded on arrival gets.
 */
class ReceivedTest {

    static final long SEED = 20261130L;

    final Received.RequestMarshaller<AnalysisRequest> marshaller =
            new Received.RequestMarshaller<>(AnalyticsService.requestMarshaller());

    static AnalysisRequest request(String alg, int n, long seed) {
        Random r = new Random(seed);
        AnalysisRequest.Builder b = AnalysisRequest.newBuilder().setRequestId("big-" + seed).setAlgorithm(alg);
        for (int i = 0; i < n; i++) {
            b.addData(r.nextGaussian() * 100);
        }
        return b.build();
    }

    /** gRPC's buffer stream over {@code bytes}, counting how many of its parts were closed (released). */
    static InputStream countingGrpcStream(byte[] bytes, int parts, AtomicInteger closed) {
        CompositeReadableBuffer composite = new CompositeReadableBuffer();
        int step = (bytes.length + parts - 1) / parts;
        for (int pos = 0; pos < bytes.length; pos += step) {
            int n = Math.min(step, bytes.length - pos);
            ByteBuffer bb = ByteBuffer.allocateDirect(n);
            bb.put(bytes, pos, n).flip();
            composite.addBuffer(new ForwardingReadableBuffer(ReadableBuffers.wrap(bb)) {
                @Override
                public void close() {
                    closed.incrementAndGet();
                    super.close();
                }
            });
        }
        return ReadableBuffers.openStream(composite, true);
    }

    @Test
    void aSmallRequestIsDecodedOnArrival() {
        AnalysisRequest small = request("mean", 1000, 1);
        Received<AnalysisRequest> got = marshaller.parse(grpcBuffers(small.toByteArray(), new Random(SEED)));
        assertTrue(got.isDecoded());
        assertEquals(small.getDataList(), Arrays.stream(got.decode().array(0)).boxed().toList());
    }

    @Test
    void aBigRequestIsDetachedAndDecodedLaterOnAnotherThreadAsTheDecoderDecodesIt() throws Exception {
        AnalysisRequest big = request("summary", 200_000, 2); // 1.6 MB
        byte[] bytes = big.toByteArray();
        assertTrue(bytes.length >= Received.DEFER_MIN_BYTES);
        AtomicInteger closed = new AtomicInteger();
        InputStream fromGrpc = countingGrpcStream(bytes, 25, closed);
        Received<AnalysisRequest> got = marshaller.parse(fromGrpc);
        assertFalse(got.isDecoded());
        assertEquals(0, fromGrpc.available(), "gRPC's stream no longer holds the bytes");
        fromGrpc.close(); // what gRPC does after parse: must not release the detached buffers
        assertEquals(0, closed.get());

        ExecutorService other = Executors.newSingleThreadExecutor();
        try {
            BulkMessage<AnalysisRequest> decoded = other.submit(got::decode).get();
            BulkMessage<AnalysisRequest> direct = AnalyticsService.requestMarshaller().parse(new ByteArrayInputStream(bytes));
            assertBitsEqual(direct.array(0), decoded.array(0), "data");
            assertEquals(direct.message(), decoded.message());
            assertEquals(25, closed.get(), "every network buffer released after the decode");
            assertEquals(0, marshaller.pendingBytes());
            assertSame(decoded, got.decode(), "decoded once");
        } finally {
            other.shutdownNow();
        }
    }

    @Test
    void aBigRequestThatIsNeverDecodedGivesItsBuffersBack() {
        AtomicInteger closed = new AtomicInteger();
        Received<AnalysisRequest> got = marshaller.parse(countingGrpcStream(request("mean", 150_000, 3).toByteArray(),
                10, closed));
        assertFalse(got.isDecoded());
        assertTrue(marshaller.pendingBytes() >= Received.DEFER_MIN_BYTES);
        got.release();
        assertEquals(10, closed.get());
        assertEquals(0, marshaller.pendingBytes());
        got.release(); // twice is harmless
        assertEquals(10, closed.get());
        assertEquals(0, marshaller.pendingBytes());
        assertThrows(IllegalStateException.class, got::decode);
    }

    @Test
    void atMostTheBoundWaitsUndecodedAndOneBiggerRequestWhenNoneWaits() {
        byte[] bytes = request("mean", 150_000, 8).toByteArray(); // 1.2 MB
        var bounded = new Received.RequestMarshaller<>(AnalyticsService.requestMarshaller(), 2L * bytes.length + 100);
        Random r = new Random(SEED + 8);
        Received<AnalysisRequest> a = bounded.parse(grpcBuffers(bytes, r));
        Received<AnalysisRequest> b = bounded.parse(grpcBuffers(bytes, r));
        Received<AnalysisRequest> c = bounded.parse(grpcBuffers(bytes, r));
        assertFalse(a.isDecoded());
        assertFalse(b.isDecoded());
        assertTrue(c.isDecoded(), "over the bound: decoded on arrival");
        assertEquals(2L * bytes.length, bounded.pendingBytes());
        a.decode();
        Received<AnalysisRequest> d = bounded.parse(grpcBuffers(bytes, r));
        assertFalse(d.isDecoded(), "room again after a decode");
        b.release();
        d.decode();
        assertEquals(0, bounded.pendingBytes());

        var tiny = new Received.RequestMarshaller<>(AnalyticsService.requestMarshaller(), 1);
        Received<AnalysisRequest> big = tiny.parse(grpcBuffers(bytes, r));
        assertFalse(big.isDecoded(), "a request over the bound waits when nothing else does");
        assertTrue(tiny.parse(grpcBuffers(bytes, r)).isDecoded());
        assertEquals(150_000, big.decode().array(0).length);
        assertEquals(0, tiny.pendingBytes());
    }

    @Test
    void aBigStreamThatCannotBeDetachedIsDecodedAtOnce() {
        byte[] bytes = request("mean", 150_000, 4).toByteArray();
        Received<AnalysisRequest> got = marshaller.parse(new ByteArrayInputStream(bytes));
        assertTrue(got.isDecoded());
        assertEquals(150_000, got.decode().array(0).length);
    }

    /** Big messages and their truncations and flipped bytes: the deferred decode accepts and rejects as the generated parser. */
    @Test
    void bigMessagesAndTheirMutationsDecodeLaterAsTheGeneratedParserDoes() {
        Random r = new Random(SEED);
        byte[] base = request("summary", 140_000, 5).toByteArray();
        List<byte[]> inputs = new ArrayList<>();
        inputs.add(base);
        for (int i = 0; i < 40; i++) {
            byte[] m = base.clone();
            switch (i % 4) {
                case 0 -> m = Arrays.copyOf(base, Received.DEFER_MIN_BYTES + r.nextInt(base.length - Received.DEFER_MIN_BYTES));
                case 1 -> m[r.nextInt(16)] ^= (byte) (1 << r.nextInt(8)); // the header: tags and lengths
                case 2 -> m[r.nextInt(m.length)] ^= (byte) (1 << r.nextInt(8));
                default -> {
                    // trailing garbage after the data: a tag with wire type 7, or a length past the end
                    m = Arrays.copyOf(base, base.length + 2);
                    m[base.length] = (byte) (r.nextBoolean() ? 0x0F : 0x22);
                    m[base.length + 1] = (byte) 0x7F;
                }
            }
            inputs.add(m);
        }
        int rejected = 0;
        for (int i = 0; i < inputs.size(); i++) {
            byte[] in = inputs.get(i);
            AnalysisRequest expected;
            try {
                expected = AnalysisRequest.parseFrom(in);
            } catch (InvalidProtocolBufferException e) {
                expected = null;
            }
            AtomicInteger closed = new AtomicInteger();
            Received<AnalysisRequest> got = marshaller.parse(countingGrpcStream(in, 7, closed));
            assertFalse(got.isDecoded(), "input " + i);
            if (expected == null) {
                StatusRuntimeException e = assertThrows(StatusRuntimeException.class, got::decode, "input " + i);
                assertEquals(Status.Code.INTERNAL, e.getStatus().getCode());
                assertEquals("Invalid protobuf byte sequence", e.getStatus().getDescription());
                assertThrows(IllegalStateException.class, got::decode, "a failed decode is not retried");
                rejected++;
            } else {
                BulkMessage<AnalysisRequest> b = got.decode();
                assertEquals(expected.getDataList(), Arrays.stream(b.array(0)).boxed().toList(), "input " + i);
                assertEquals(expected.toBuilder().clearData().clearTarget().build(), b.message(), "input " + i);
            }
            assertEquals(7, closed.get(), "input " + i + ": buffers released");
            assertEquals(0, marshaller.pendingBytes(), "input " + i);
        }
        assertTrue(rejected >= 10, "the mutations include malformed inputs: " + rejected);
    }

    @Test
    void theServerAnswersBigRequestsOnOneConnectionAndRejectsMalformedOnesAsSmallOnes() throws Exception {
        try (TestEngine engine = new TestEngine()) {
            var service = engine.server.servicesForTest().stream().filter(s -> s.getServiceDescriptor().getName()
                    .equals(AnalyticsEngineGrpc.SERVICE_NAME)).findFirst().orElseThrow();
            var registered = service.getMethod(AnalyticsEngineGrpc.getAnalyzeMethod().getFullMethodName())
                    .getMethodDescriptor().getRequestMarshaller();
            assertSame(Received.RequestMarshaller.class, registered.getClass());
            var onServer = (Received.RequestMarshaller<?>) registered;

            // Four big requests at once on the one channel, each with its own data: each gets its own mean.
            ExecutorService callers = Executors.newFixedThreadPool(4);
            try {
                List<Future<AnalysisResponse>> answers = new ArrayList<>();
                List<AnalysisRequest> sent = new ArrayList<>();
                for (int i = 0; i < 8; i++) {
                    AnalysisRequest q = request("mean", 300_000, 100 + i);
                    sent.add(q);
                    answers.add(callers.submit(() -> engine.stub.analyze(q)));
                }
                for (int i = 0; i < sent.size(); i++) {
                    AnalysisResponse resp = answers.get(i).get();
                    assertTrue(resp.getSuccess(), resp.getErrorMessage());
                    double[] d = sent.get(i).getDataList().stream().mapToDouble(Double::doubleValue).toArray();
                    double want = ((Number) NativeStatistics.KERNELS.get("mean").compute(d, Map.of())).doubleValue();
                    assertEquals(want, Double.parseDouble(resp.getResultJson()), 0.0, "request " + i);
                    assertEquals(sent.get(i).getRequestId(), resp.getRequestId());
                    assertEquals(300_000, resp.getMetadata().getDataSize());
                }
            } finally {
                callers.shutdownNow();
            }
            // gRPC's own message streams let the big ones be detached (not only the streams built here)
            assertTrue(onServer.deferredCount() >= 1, "no request was deferred on the server");
            assertEquals(0, onServer.pendingBytes());

            // A big malformed request: the status a request gets when it fails to parse on arrival (gRPC's
            // own: UNKNOWN "Application error processing RPC").
            byte[] base = request("mean", 150_000, 6).toByteArray();
            byte[] bad = Arrays.copyOf(base, base.length + 1);
            bad[base.length] = 0x0F; // field 1, wire type 7
            StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> ClientCalls.blockingUnaryCall(
                    engine.channel, rawMethod(AnalyticsEngineGrpc.getAnalyzeMethod()), CallOptions.DEFAULT, bad));
            StatusRuntimeException generated = assertThrows(StatusRuntimeException.class, () -> ClientCalls.blockingUnaryCall(
                    engine.channel, rawMethod(AnalyticsEngineGrpc.getHealthCheckMethod()), CallOptions.DEFAULT, bad));
            assertEquals(generated.getStatus().getCode(), e.getStatus().getCode());
            assertEquals(generated.getStatus().getDescription(), e.getStatus().getDescription());

            // and the connection still serves
            assertTrue(engine.stub.analyze(request("mean", 150_000, 7)).getSuccess());
        }
    }
}
