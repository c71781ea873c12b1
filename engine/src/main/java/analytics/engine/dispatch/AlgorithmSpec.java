package analytics.engine.dispatch;

import java.util.List;

/**
 * Metadata of one algorithm: feeds GetSupportedAlgorithms, request validation and the README table.
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

    /** One parameter; every value arrives as a string and is checked against {@code type}. */
    public record ParamSpec(String name, boolean required, Type type, String defaultValue, String help) {
        public enum Type { INT, NUMBER, STRING, BOOL, INT_LIST }

        public static ParamSpec req(String name, Type type, String help) {
            return new ParamSpec(name, true, type, "", help);
        }

        public static ParamSpec opt(String name, Type type, String def, String help) {
            return new ParamSpec(name, false, type, def, help);
        }
    }
}
