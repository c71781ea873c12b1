package analytics.engine.fuzz;

import analytics.engine.workers.transport.WireCodec;
import io.netty.buffer.Unpooled;
import java.util.Map;

/**
 * Coverage-guided fuzz target (Jazzer, see tests/fuzz.sh) for the engine's worker frame decoder: any
 * frame body must decode to a map with a string {@code type} or be refused with
 * {@link WireCodec.ProtocolException}; any other exception or error (stack overflow, OOM, NPE) is a finding.
 */
public final class WireCodecFuzzTarget {

    private WireCodecFuzzTarget() {
    }

    /** Jazzer calls this once before fuzzing: load and instrument the classes outside the per-input timeout. */
    public static void fuzzerInitialize() {
        for (byte[] b : new byte[][] {{(byte) 0x81, (byte) 0xa4, 't', 'y', 'p', 'e', (byte) 0xa1, 'x'},
            {(byte) 0x91, 1}, {(byte) 0xc1}, {}}) {
            try {
                fuzzerTestOneInput(b);
            } catch (RuntimeException e) {
                throw new IllegalStateException("warm-up input failed", e);
            }
        }
    }

    public static void fuzzerTestOneInput(byte[] body) {
        try {
            Map<String, Object> m = WireCodec.decode(Unpooled.wrappedBuffer(body));
            if (!(m.get("type") instanceof String)) {
                throw new IllegalStateException("decode returned a map without a string 'type'");
            }
        } catch (WireCodec.ProtocolException expected) {
            if (expected.getMessage() == null || expected.getMessage().isEmpty()) {
                throw new IllegalStateException("protocol error without a description");
            }
        }
    }
}
