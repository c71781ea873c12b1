package analytics.engine.config;

import java.io.IOException;
import java.io.InputStream;
import java.util.Properties;

/** Version and git commit, filtered into analytics-build.properties at build time. */
public final class BuildInfo {
    public static final String VERSION;
    public static final String GIT_COMMIT;

    static {
        Properties p = new Properties();
        try (InputStream in = BuildInfo.class.getResourceAsStream("/analytics-build.properties")) {
            if (in != null) {
                p.load(in);
            }
        } catch (IOException ignored) {
            // fall through to "unknown"
        }
        VERSION = clean(p.getProperty("version"));
        GIT_COMMIT = clean(p.getProperty("git.commit"));
    }

    private static String clean(String v) {
        return v == null || v.isBlank() || v.startsWith("${") ? "unknown" : v.trim();
    }

    private BuildInfo() {
    }
}
