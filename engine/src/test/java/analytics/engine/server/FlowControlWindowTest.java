package analytics.engine.server;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import analytics.engine.proto.AnalysisRequest;
import analytics.engine.proto.AnalysisResponse;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.DataInputStream;
import java.io.OutputStream;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * The server announces the configured initial HTTP/2 flow-control window ({@code flow_window_mb}), so
 * a large request does not wait for WINDOW_UPDATE round trips every MiB (grpc-java's default is 1 MiB).
 */
class FlowControlWindowTest {

    private static final int SETTINGS = 0x4;
    private static final int WINDOW_UPDATE = 0x8;
    private static final int SETTINGS_INITIAL_WINDOW_SIZE = 0x4;
    private static final int HTTP2_DEFAULT_WINDOW = 65_535;

    /** What the server says in its first frames: {initial stream window, connection window increment}. */
    static long[] announcedWindows(int port) throws Exception {
        try (Socket s = new Socket("127.0.0.1", port)) {
            s.setSoTimeout(10_000);
            OutputStream out = s.getOutputStream();
            out.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".getBytes(StandardCharsets.US_ASCII));
            out.write(new byte[] {0, 0, 0, SETTINGS, 0, 0, 0, 0, 0}); // our (empty) SETTINGS
            out.flush();
            DataInputStream in = new DataInputStream(s.getInputStream());
            long initialWindow = -1;
            long connectionIncrement = -1;
            // the server's SETTINGS come first; its connection WINDOW_UPDATE and SETTINGS ACK follow
            for (int frames = 0; frames < 8 && (initialWindow < 0 || connectionIncrement < 0); frames++) {
                int len = (in.readUnsignedByte() << 16) | in.readUnsignedShort();
                int type = in.readUnsignedByte();
                int flags = in.readUnsignedByte();
                int stream = in.readInt() & 0x7fffffff;
                byte[] payload = new byte[len];
                in.readFully(payload);
                if (type == SETTINGS && (flags & 1) == 0) {
                    initialWindow = HTTP2_DEFAULT_WINDOW; // unless announced
                    for (int i = 0; i + 6 <= len; i += 6) {
                        int id = ((payload[i] & 0xff) << 8) | (payload[i + 1] & 0xff);
                        long v = ((payload[i + 2] & 0xffL) << 24) | ((payload[i + 3] & 0xff) << 16)
                                | ((payload[i + 4] & 0xff) << 8) | (payload[i + 5] & 0xff);
                        if (id == SETTINGS_INITIAL_WINDOW_SIZE) {
                            initialWindow = v;
                        }
                    }
                } else if (type == WINDOW_UPDATE && stream == 0) {
                    connectionIncrement = ((payload[0] & 0x7fL) << 24) | ((payload[1] & 0xff) << 16)
                            | ((payload[2] & 0xff) << 8) | (payload[3] & 0xff);
                }
            }
            if (initialWindow < 0 || connectionIncrement < 0) {
                fail("no SETTINGS and connection WINDOW_UPDATE from the server in its first frames");
            }
            return new long[] {initialWindow, connectionIncrement};
        }
    }

    @Test
    void theServerAnnouncesA16MiBWindowByDefaultAndAMillionPointSummaryWorks() throws Exception {
        try (TestEngine engine = new TestEngine()) {
            assertEquals(16 << 20, engine.config.flowWindowBytes(), "flow_window_mb defaults to 16");
            long[] w = announcedWindows(engine.server.port());
            assertEquals(16 << 20, w[0], "SETTINGS_INITIAL_WINDOW_SIZE (per call)");
            assertEquals((16 << 20) - HTTP2_DEFAULT_WINDOW, w[1], "connection window raised to the same size");

            // a 10^6-point (8 MB) summary over that connection; values checked against a sorted copy
            int n = 1_000_000;
            SplittableRandom r = new SplittableRandom(16);
            double[] d = new double[n];
            AnalysisRequest.Builder b = AnalysisRequest.newBuilder().setAlgorithm("summary");
            for (int i = 0; i < n; i++) {
                d[i] = r.nextDouble() * 100 - 50;
                b.addData(d[i]);
            }
            AnalysisResponse resp = engine.stub.withDeadlineAfter(120, java.util.concurrent.TimeUnit.SECONDS).analyze(b.build());
            assertTrue(resp.getSuccess(), resp.getErrorMessage());
            JsonNode j = new ObjectMapper().readTree(resp.getResultJson());
            Arrays.sort(d);
            assertEquals(n, j.get("count").asLong());
            assertEquals((d[n / 2 - 1] + d[n / 2]) / 2, j.get("median").asDouble(), 0.0);
            assertEquals(d[0], j.get("min").asDouble(), 0.0);
            assertEquals(d[n - 1], j.get("max").asDouble(), 0.0);
        }
    }

    @Test
    void theWindowFollowsTheSetting() throws Exception {
        try (TestEngine engine = new TestEngine(Map.of("flow_window_mb", "3"), null)) {
            long[] w = announcedWindows(engine.server.port());
            assertEquals(3 << 20, w[0]);
            assertEquals((3 << 20) - HTTP2_DEFAULT_WINDOW, w[1]);
        }
    }
}
