package analytics.engine.workers.transport;

import analytics.engine.proto.ErrorCode;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

/**
 * The frames a worker sends, typed (py-worker/PROTOCOL.md). {@link WireCodec} turns bytes into a msgpack map;
 * {@link #of} turns that map into one of these records, so nothing past the socket reads string-keyed maps.
 * What the engine sends (request, ping, shutdown) is encoded by {@link WireCodec}.
 */
public sealed interface WorkerMessage {

    /** First frame of a worker: who it is and what it serves. */
    record Hello(String token, long protocol, long pid, Map<String, String> versions, Map<String, Object> algorithms,
                 Set<String> features) implements WorkerMessage {
    }

    /** The answer to a request: a result, or an error with the worker's code. */
    record Response(String id, boolean ok, String resultJson, WorkerError error, String errorMessage,
                    long computeMicros) implements WorkerMessage {
    }

    /** Revision 3: how far the request {@code id} is (fraction 0..1, or -1 when the frame had none usable). */
    record Progress(String id, double fraction, String detail) implements WorkerMessage {
    }

    /** The answer to a ping, with the worker's resident memory (-1 when it did not say). */
    record Pong(String id, long rssBytes) implements WorkerMessage {
    }

    /** Any other frame: a protocol violation after the hello. */
    record Unexpected(String type) implements WorkerMessage {
    }

    /**
     * The worker's error codes (py-worker/analytics_worker/core.py declares them; a test checks both sides
     * agree) and the API code each becomes. Anything unknown is INTERNAL.
     */
    enum WorkerError {
        INVALID_ARGUMENT(ErrorCode.INVALID_ARGUMENT),
        UNKNOWN_ALGORITHM(ErrorCode.UNKNOWN_ALGORITHM),
        INTERNAL(ErrorCode.INTERNAL),
        /** revision 3: the worker stopped the request after a {@code cancel} frame */
        CANCELLED(ErrorCode.CANCELLED);

        private final ErrorCode api;

        WorkerError(ErrorCode api) {
            this.api = api;
        }

        public ErrorCode toApi() {
            return api;
        }

        static WorkerError parse(Object code) {
            for (WorkerError e : values()) {
                if (e.name().equals(code)) {
                    return e;
                }
            }
            return INTERNAL;
        }
    }

    /** The typed form of a decoded frame. */
    static WorkerMessage of(Map<String, Object> m) {
        Object type = m.get("type");
        if ("response".equals(type)) {
            boolean ok = Boolean.TRUE.equals(m.get("ok"));
            long compute = m.get("timings") instanceof Map<?, ?> t && t.get("compute_us") instanceof Long c ? c : 0;
            return new Response(str(m.get("id")), ok, m.get("result_json") instanceof String s ? s : null,
                    ok ? null : WorkerError.parse(m.get("error_code")),
                    m.get("error_message") instanceof String s ? s : "Python worker reported an error", compute);
        }
        if ("progress".equals(type)) {
            double f = m.get("fraction") instanceof Double d && Double.isFinite(d) ? Math.max(0, Math.min(1, d)) : -1;
            return new Progress(str(m.get("id")), f, m.get("detail") instanceof String s ? s : "");
        }
        if ("pong".equals(type)) {
            return new Pong(str(m.get("id")), m.get("rss_bytes") instanceof Long r ? r : -1);
        }
        if ("hello".equals(type)) {
            return new Hello(m.get("token") instanceof String t ? t : null,
                    m.get("protocol") instanceof Long v ? v : -1,
                    m.get("pid") instanceof Long p ? p : -1,
                    stringMap(m.get("versions")),
                    m.get("algorithms") instanceof Map<?, ?> a ? objectMap(a) : Map.of(),
                    strings(m.get("features")));
        }
        return new Unexpected(String.valueOf(type));
    }

    private static String str(Object o) {
        return o instanceof String s ? s : null;
    }

    private static Map<String, String> stringMap(Object o) {
        if (!(o instanceof Map<?, ?> m)) {
            return Map.of();
        }
        Map<String, String> out = new TreeMap<>();
        m.forEach((k, v) -> out.put(String.valueOf(k), String.valueOf(v)));
        return out;
    }

    private static Map<String, Object> objectMap(Map<?, ?> m) {
        Map<String, Object> out = new TreeMap<>();
        m.forEach((k, v) -> out.put(String.valueOf(k), v));
        return out;
    }

    /** The string entries of a list (anything else is ignored). */
    private static Set<String> strings(Object list) {
        if (!(list instanceof List<?> l)) {
            return Set.of();
        }
        java.util.HashSet<String> out = new java.util.HashSet<>();
        for (Object o : l) {
            if (o instanceof String s) {
                out.add(s);
            }
        }
        return Set.copyOf(out);
    }
}
