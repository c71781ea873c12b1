package analytics.engine.workers.transport;

import analytics.engine.api.AnalysisInput;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.PooledByteBufAllocator;
import io.netty.buffer.Unpooled;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class WireCodecTest {

    @Test
    void requestFrameHasLengthPrefixAndLittleEndianPayload() throws Exception {
        double[] data = {1.0, -0.5, Math.PI, 1e300, -0.0, 6.0};
        double[] target = {7.0, 8.0, 9.0};
        ByteBuf frame = WireCodec.encodeRequest(PooledByteBufAllocator.DEFAULT, "req-1", new AnalysisInput("req-1", "kmeans",
                data, 3, 2, true, target, List.of("héllo", "wörld"), Map.of("k", "3")), 1234, null, null);
        try {
            assertTrue(frame.isDirect());
            int len = frame.readInt();
            assertEquals(frame.readableBytes(), len);
            Map<String, Object> m = WireCodec.decode(frame.slice());
            assertEquals("request", m.get("type"));
            assertEquals("req-1", m.get("id"));
            assertEquals("kmeans", m.get("algorithm"));
            assertEquals(Map.of("k", "3"), m.get("params"));
            assertEquals(List.of(3L, 2L), m.get("shape"));
            assertEquals(1234L, m.get("timeout_ms"));
            assertEquals(List.of("héllo", "wörld"), m.get("texts"));
            assertArrayEquals(le(data), (byte[]) m.get("data"));
            assertArrayEquals(le(target), (byte[]) m.get("target"));
        } finally {
            frame.release();
        }
    }

    @Test
    void seriesShapeIsOneDimensional() throws Exception {
        ByteBuf frame = WireCodec.encodeRequest(PooledByteBufAllocator.DEFAULT, "r", new AnalysisInput("r", "mean",
                new double[] {1, 2}, 2, 1, false, null, List.of(), Map.of()), 10, null, null);
        try {
            frame.readInt();
            Map<String, Object> m = WireCodec.decode(frame.slice());
            assertEquals(List.of(2L), m.get("shape"));
            assertTrue(!m.containsKey("target") && !m.containsKey("texts"));
        } finally {
            frame.release();
        }
    }

    private static byte[] le(double[] v) {
        ByteBuffer b = ByteBuffer.allocate(v.length * 8).order(ByteOrder.LITTLE_ENDIAN);
        for (double d : v) {
            b.putDouble(d);
        }
        return b.array();
    }

    @Test
    void malformedFramesAreProtocolErrors() {
        assertThrows(WireCodec.ProtocolException.class, () -> WireCodec.decode(Unpooled.EMPTY_BUFFER));
        assertThrows(WireCodec.ProtocolException.class, () -> WireCodec.decode(Unpooled.wrappedBuffer(new byte[] {(byte) 0xc1, 1, 2})));
        assertThrows(WireCodec.ProtocolException.class, () -> WireCodec.decode(Unpooled.wrappedBuffer(new byte[] {(byte) 0x93, 1, 2, 3})));
        // a map without 'type'
        assertThrows(WireCodec.ProtocolException.class, () -> WireCodec.decode(Unpooled.wrappedBuffer(new byte[] {(byte) 0x81, (byte) 0xa1, 'a', 1})));
        // truncated map
        assertThrows(WireCodec.ProtocolException.class, () -> WireCodec.decode(Unpooled.wrappedBuffer(new byte[] {(byte) 0x82, (byte) 0xa4, 't', 'y', 'p', 'e'})));
    }

    @Test
    void dataFileReplacesTheDataBinAndHoldsLittleEndianDoubles(@org.junit.jupiter.api.io.TempDir java.nio.file.Path dir)
            throws Exception {
        double[] data = new double[200_000]; // several 1 MiB chunks plus a partial one
        for (int i = 0; i < data.length; i++) {
            data[i] = i * 0.5 - 3;
        }
        double[] target = {1, 2};
        DataFile df = DataFile.write(dir, data);
        DataFile small = DataFile.write(dir, new double[] {4});
        DataFile tf = DataFile.write(dir, target);
        try {
            assertEquals(java.util.Set.of("rw-------"), java.util.Set.of(java.nio.file.attribute.PosixFilePermissions
                    .toString(java.nio.file.Files.getPosixFilePermissions(df.path()))));
            ByteBuffer bytes = ByteBuffer.wrap(java.nio.file.Files.readAllBytes(df.path())).order(ByteOrder.LITTLE_ENDIAN);
            double[] back = new double[data.length];
            bytes.asDoubleBuffer().get(back);
            assertArrayEquals(data, back);
            assertEquals(8, java.nio.file.Files.size(small.path()));
            assertTrue(df.name().startsWith(DataFile.PREFIX) && !df.name().contains("/"), df.name());

            ByteBuf frame = WireCodec.encodeRequest(PooledByteBufAllocator.DEFAULT, "r", new AnalysisInput("r", "linear_regression",
                    new double[] {1, 2, 3, 4}, 2, 2, true, target, List.of(), Map.of()), 10,
                    DataFile.write(dir, new double[] {1, 2, 3, 4}), tf);
            try {
                assertEquals(frame.readableBytes() - 4, frame.readInt());
                Map<String, Object> m = WireCodec.decode(frame.slice());
                assertTrue(!m.containsKey("data") && !m.containsKey("target"), m.toString());
                @SuppressWarnings("unchecked")
                Map<String, Object> ref = (Map<String, Object>) m.get("data_file");
                assertEquals(32L, ref.get("nbytes"));
                assertEquals(Map.of("name", tf.name(), "nbytes", 16L), m.get("target_file"));
                assertEquals(List.of(2L, 2L), m.get("shape"));
            } finally {
                frame.release();
            }
            assertThrows(IllegalArgumentException.class, () -> WireCodec.encodeRequest(PooledByteBufAllocator.DEFAULT, "r",
                    new AnalysisInput("r", "mean", new double[] {1, 2}, 2, 1, false, null, List.of(), Map.of()), 10, small, null));
        } finally {
            df.delete();
            small.delete();
            tf.delete();
        }
        assertEquals(1, DataFile.sweep(dir), "the frame's own data file is swept");
        try (var s = java.nio.file.Files.list(dir)) {
            assertEquals(0, s.count());
        }
    }
}
