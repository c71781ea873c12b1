package analytics.engine.stats;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;

/** Loads tests/fixtures/stats_fixtures.json and materialises its datasets (including the LCG ones). */
final class StatsFixtures {
    private StatsFixtures() {
    }

    private static JsonNode root;
    private static final Map<String, double[]> DATA = new HashMap<>();

    static Path repoRoot() {
        String p = System.getProperty("analytics.repo.root");
        if (p == null) {
            throw new IllegalStateException("system property analytics.repo.root is not set "
                    + "(run the tests through Maven, whose surefire config sets it)");
        }
        return Path.of(p).toAbsolutePath().normalize();
    }

    static synchronized JsonNode root() {
        if (root == null) {
            Path f = repoRoot().resolve("tests/fixtures/stats_fixtures.json");
            try {
                root = new ObjectMapper().readTree(Files.readString(f));
            } catch (IOException e) {
                throw new UncheckedIOException("cannot read " + f, e);
            }
        }
        return root;
    }

    /** The named dataset; the caller must not modify it (tests clone before mutating). */
    static synchronized double[] dataset(String name) {
        return DATA.computeIfAbsent(name, n -> {
            if (n.equals("lcg_1e6")) {
                return lcgFine();
            }
            if (n.equals("lcg_1e6_coarse")) {
                return lcgCoarse();
            }
            JsonNode arr = root().get("datasets").get(n);
            if (arr == null) {
                throw new IllegalArgumentException("no dataset " + n + " in the fixtures");
            }
            double[] d = new double[arr.size()];
            for (int i = 0; i < d.length; i++) {
                d[i] = arr.get(i).doubleValue();
            }
            return d;
        });
    }

    /** The raw 32-bit LCG states x_1..x_n of the fixture's "lcg" block. */
    static long[] lcgStates() {
        JsonNode l = root().get("lcg");
        long a = l.get("a").asLong();
        long c = l.get("c").asLong();
        long x = l.get("seed").asLong();
        int n = l.get("n").asInt();
        long[] s = new long[n];
        for (int i = 0; i < n; i++) {
            x = (a * x + c) & 0xFFFFFFFFL;
            s[i] = x;
        }
        return s;
    }

    /** x * 2^-32 * 1000.0 - 250.0 */
    static double[] lcgFine() {
        long[] s = lcgStates();
        double[] d = new double[s.length];
        for (int i = 0; i < s.length; i++) {
            d[i] = ((double) s[i] * 0x1p-32) * 1000.0 - 250.0;
        }
        return d;
    }

    /** (x >> 22) * 0.5 - 100.0 */
    static double[] lcgCoarse() {
        long[] s = lcgStates();
        double[] d = new double[s.length];
        for (int i = 0; i < s.length; i++) {
            d[i] = (double) (s[i] >>> 22) * 0.5 - 100.0;
        }
        return d;
    }
}
