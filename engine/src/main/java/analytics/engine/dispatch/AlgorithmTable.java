package analytics.engine.dispatch;

import analytics.engine.dispatch.AlgorithmSpec.ParamSpec;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Collectors;

/**
 * The algorithms as Markdown, from the registry (hence from the worker package's catalogue for the Python
 * ones): printed by {@code analytics-server --print-algorithms}; the README's rows are checked against
 * {@link #params} by ReadmeTest.
 */
public final class AlgorithmTable {

    private AlgorithmTable() {
    }

    /** The params column: required in bold, then {@code name} = default, choices and allowed words. */
    public static String params(AlgorithmSpec s) {
        return s.params().stream().map(AlgorithmTable::param).collect(Collectors.joining(", "));
    }

    static String param(ParamSpec p) {
        if (p.required()) {
            return "**`" + p.name() + "`**";
        }
        StringBuilder b = new StringBuilder("`").append(p.name()).append('`');
        if (!p.defaultValue().isEmpty()) {
            b.append(" = `").append(p.defaultValue()).append('`');
        }
        List<String> alt = new ArrayList<>(p.type() == ParamSpec.Type.CHOICE ? p.choices() : p.words());
        alt.remove(p.defaultValue());
        List<String> shown = new ArrayList<>();
        if (p.type() != ParamSpec.Type.CHOICE && !p.words().isEmpty()) {
            shown.add(typeName(p)); // a value of the type, besides the words
        }
        alt.forEach(a -> shown.add("`" + a + "`"));
        if ((p.type() == ParamSpec.Type.CHOICE || !p.words().isEmpty()) && !shown.isEmpty()) {
            b.append(" (or ").append(String.join(", ", shown)).append(')');
        }
        return b.toString();
    }

    private static String typeName(ParamSpec p) {
        return p.type() == ParamSpec.Type.INT ? "an integer" : p.type() == ParamSpec.Type.NUMBER ? "a number" : "a value";
    }

    /** One table of every algorithm: name, implementations, input, fewest points, params, description. */
    public static List<String> markdown(AlgorithmRegistry registry) {
        List<String> out = new ArrayList<>();
        out.add("| algorithm | implementations | input | min points | params (required **bold**, `name` = default) | description |");
        out.add("|---|---|---|---|---|---|");
        for (AlgorithmSpec s : registry.all()) {
            out.add("| `" + s.name() + "` | " + String.join(", ", s.implementations()) + " | " + s.input() + " | "
                    + s.minPoints() + " | " + params(s) + " | " + s.description().replace("|", "\\|") + " |");
        }
        return out;
    }
}
