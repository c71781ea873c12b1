package analytics.engine.dispatch;

import analytics.engine.dispatch.AlgorithmSpec.ParamSpec;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * The Python algorithms as the worker package declares them ({@code py-worker/analytics_worker/catalogue.py}).
 * The engine reads the generated copy {@value #RESOURCE} (written by {@code scripts/gen-catalogue.sh}), so it
 * validates and lists Python algorithms before any worker has started, and with {@code workers = 0};
 * {@code CatalogueDriftTest} fails when that copy and the package differ, and each worker's hello is
 * compared with it at run time ({@link #differences}).
 */
public final class PythonCatalogue {

    public static final String RESOURCE = "/analytics/engine/catalogue/python-algorithms.json";

    private PythonCatalogue() {
    }

    /** The catalogue shipped in the jar, in its order (sorted by name). */
    public static List<AlgorithmSpec> load() {
        try (InputStream in = PythonCatalogue.class.getResourceAsStream(RESOURCE)) {
            if (in == null) {
                throw new IllegalStateException("resource " + RESOURCE + " missing from the jar: run scripts/gen-catalogue.sh");
            }
            return parse(new ObjectMapper().readTree(in));
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + RESOURCE, e);
        }
    }

    /** Parses {@code {"algorithms": [entry, ...]}} as printed by {@code python -m analytics_worker.catalogue}. */
    public static List<AlgorithmSpec> parse(JsonNode root) {
        List<AlgorithmSpec> out = new ArrayList<>();
        for (JsonNode a : root.path("algorithms")) {
            out.add(entry(a.path("name").asText(), a));
        }
        return List.copyOf(out);
    }

    /** One entry; {@code name} is passed apart because the hello keys its entries by name. */
    public static AlgorithmSpec entry(String name, JsonNode a) {
        List<ParamSpec> params = new ArrayList<>();
        for (JsonNode p : a.path("params")) {
            params.add(new ParamSpec(
                    p.path("name").asText(),
                    p.path("required").asBoolean(),
                    ParamSpec.Type.valueOf(p.path("type").asText().toUpperCase(Locale.ROOT)),
                    p.path("default").asText(""),
                    p.path("help").asText(""),
                    number(p.path("min")),
                    number(p.path("max")),
                    p.path("min_exclusive").asBoolean(false),
                    strings(p.path("choices")),
                    strings(p.path("words"))));
        }
        return new AlgorithmSpec(name, a.path("category").asText(), a.path("description").asText(), false, true,
                a.path("input").asText(), a.path("min_points").asInt(0), List.copyOf(params));
    }

    /** True for the test-only algorithms ({@code _test_*}), listed only in test mode. */
    public static boolean testOnly(AlgorithmSpec s) {
        return s.category().equals("test");
    }

    private static Double number(JsonNode n) {
        return n.isNumber() ? n.asDouble() : null;
    }

    private static List<String> strings(JsonNode n) {
        List<String> out = new ArrayList<>();
        n.forEach(x -> out.add(x.asText()));
        return List.copyOf(out);
    }

    /**
     * What a worker's hello announces that differs from {@code expected} (empty = the same): algorithms
     * missing or extra, or an entry that differs (types, defaults, bounds, minimum points, input kind).
     * {@code hello} maps name → entry as the worker sends it.
     */
    public static List<String> differences(List<AlgorithmSpec> expected, java.util.Map<String, AlgorithmSpec> hello) {
        List<String> out = new ArrayList<>();
        for (AlgorithmSpec e : expected) {
            AlgorithmSpec h = hello.get(e.name());
            if (h == null) {
                out.add(e.name() + " not served by the worker");
            } else if (!h.equals(e)) {
                out.add(e.name() + " declared differently by the worker");
            }
        }
        for (String n : hello.keySet()) {
            if (expected.stream().noneMatch(e -> e.name().equals(n))) {
                out.add(n + " served by the worker but not in the engine's catalogue");
            }
        }
        return out;
    }
}
