package analytics.engine;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

/**
 * The engine's packages form layers: no package reaches (through imports or qualified names) a package that
 * reaches it back. The types both dispatch and the backends need live in {@code analytics.engine.api}.
 */
class PackageCyclesTest {

    private static final Pattern PACKAGE = Pattern.compile("^package ([\\w.]+);", Pattern.MULTILINE);
    private static final Pattern REFERENCE = Pattern.compile("\\b(analytics\\.engine(?:\\.[a-z]\\w*)*)\\.[A-Z]");

    static Map<String, Set<String>> dependencies() throws Exception {
        Map<String, Set<String>> deps = new TreeMap<>();
        Path root = Path.of(System.getProperty("analytics.repo.root", ".."), "engine/src/main/java");
        try (Stream<Path> files = Files.walk(root)) {
            for (Path f : files.filter(p -> p.toString().endsWith(".java")).toList()) {
                String src = Files.readString(f);
                Matcher pm = PACKAGE.matcher(src);
                if (!pm.find()) {
                    continue;
                }
                String pkg = pm.group(1);
                Set<String> out = deps.computeIfAbsent(pkg, k -> new TreeSet<>());
                Matcher m = REFERENCE.matcher(src);
                while (m.find()) {
                    String target = m.group(1);
                    if (!target.equals(pkg) && !target.startsWith("analytics.engine.proto")) {
                        out.add(target);
                    }
                }
            }
        }
        return deps;
    }

    @Test
    void noPackageReachesItself() throws Exception {
        Map<String, Set<String>> deps = dependencies();
        List<String> cycles = new ArrayList<>();
        for (String start : deps.keySet()) {
            // depth-first over what start reaches; a path back to start is a cycle
            List<List<String>> stack = new ArrayList<>(List.of(List.of(start)));
            Set<String> seen = new TreeSet<>();
            while (!stack.isEmpty()) {
                List<String> path = stack.remove(stack.size() - 1);
                for (String next : deps.getOrDefault(path.get(path.size() - 1), Set.of())) {
                    if (next.equals(start)) {
                        List<String> c = new ArrayList<>(path);
                        c.add(start);
                        cycles.add(String.join(" -> ", c));
                    } else if (seen.add(next)) {
                        List<String> longer = new ArrayList<>(path);
                        longer.add(next);
                        stack.add(longer);
                    }
                }
            }
        }
        assertEquals(List.of(), cycles, "package cycles; dependencies: " + deps);
    }
}
