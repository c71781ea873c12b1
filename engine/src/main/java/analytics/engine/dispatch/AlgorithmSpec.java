package analytics.engine.dispatch;

import java.util.List;

/**
 * Metadata of one algorithm: feeds GetSupportedAlgorithms, request validation and the README table.
 * Native statistics are declared in {@link AlgorithmRegistry}; Python algorithms come from the
 * worker package's catalogue ({@link PythonCatalogue}).
 *
 * @param input     what the algorithm reads: {@code series} (1-D data), {@code matrix} (data + shape,
 *                  1-D accepted) or {@code text} (texts / params)
 * @param minPoints fewest data values it needs (0 for text algorithms)
 */
public record AlgorithmSpec(
        String name,
        String category,
        String description,
        boolean nativeImpl,
        boolean pythonImpl,
        String input,
        int minPoints,
        List<ParamSpec> params) {

    public List<String> implementations() {
        if (nativeImpl && pythonImpl) {
            return List.of("native", "python");
        }
        return List.of(nativeImpl ? "native" : "python");
    }

    public List<String> requiredParams() {
        return params.stream().filter(ParamSpec::required).map(ParamSpec::name).toList();
    }

    public List<String> optionalParams() {
        return params.stream().filter(p -> !p.required()).map(ParamSpec::name).toList();
    }

    /**
     * One parameter; every value arrives as a string and is checked against {@code type}, the bounds
     * ({@code null} = none) and {@code choices}; {@code words} are literal values accepted besides the type
     * (e.g. {@code threshold=auto}). Both lists are lower case and compared case-insensitively.
     */
    public record ParamSpec(String name, boolean required, Type type, String defaultValue, String help,
                            Double min, Double max, boolean minExclusive, List<String> choices,
                            List<String> words) {
        public enum Type { INT, NUMBER, STRING, BOOL, INT_LIST, CHOICE }

        public static ParamSpec req(String name, Type type, String help) {
            return new ParamSpec(name, true, type, "", help, null, null, false, List.of(), List.of());
        }

        public static ParamSpec opt(String name, Type type, String def, String help) {
            return new ParamSpec(name, false, type, def, help, null, null, false, List.of(), List.of());
        }

        public static ParamSpec choice(String name, String def, String help, String... choices) {
            return new ParamSpec(name, false, Type.CHOICE, def, help, null, null, false, List.of(choices), List.of());
        }

        public ParamSpec withRange(Double lo, Double hi) {
            return new ParamSpec(name, required, type, defaultValue, help, lo, hi, minExclusive, choices, words);
        }
    }
}
