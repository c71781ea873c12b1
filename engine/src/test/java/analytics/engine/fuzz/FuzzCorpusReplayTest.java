package analytics.engine.fuzz;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

/**
 * Replays the committed coverage-guided fuzzing corpus (tests/fuzz/corpus/, grown by tests/fuzz.sh with
 * Jazzer) through both fuzz targets: every input that ever found new coverage stays a regression test.
 */
class FuzzCorpusReplayTest {

    static List<Path> corpus(String name) throws Exception {
        Path dir = Path.of(System.getProperty("analytics.repo.root", ".."), "tests", "fuzz", "corpus", name);
        assertTrue(Files.isDirectory(dir), "corpus directory " + dir + " exists");
        try (Stream<Path> s = Files.list(dir)) {
            List<Path> files = s.filter(Files::isRegularFile).sorted().toList();
            assertTrue(files.size() >= 10, "corpus " + name + " has inputs: " + files.size());
            return files;
        }
    }

    @Test
    void wireCodecCorpus() throws Exception {
        for (Path p : corpus("wire-codec")) {
            try {
                WireCodecFuzzTarget.fuzzerTestOneInput(Files.readAllBytes(p));
            } catch (Throwable t) {
                throw new AssertionError("corpus input " + p.getFileName() + ": " + t, t);
            }
        }
    }

    @Test
    void validatorCorpus() throws Exception {
        for (Path p : corpus("validator")) {
            try {
                ValidatorFuzzTarget.fuzzerTestOneInput(Files.readAllBytes(p));
            } catch (Throwable t) {
                throw new AssertionError("corpus input " + p.getFileName() + ": " + t, t);
            }
        }
    }
}
