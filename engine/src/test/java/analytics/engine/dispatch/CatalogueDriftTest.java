package analytics.engine.dispatch;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

import analytics.engine.workers.WorkerTestSupport;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * The engine validates Python algorithms from its copy of the worker package's catalogue; this fails on
 * any difference between that copy and what the package declares now (a default, a type, a bound, an
 * allowed word, the minimum points, the input kind, an algorithm added or removed). Fix: run
 * {@code scripts/gen-catalogue.sh}.
 */
class CatalogueDriftTest {

    static JsonNode declaredByThePackage() throws Exception {
        ProcessBuilder pb = new ProcessBuilder(WorkerTestSupport.python().toString(), "-c",
                "import sys; sys.path.insert(0, '.'); from analytics_worker.catalogue import main; sys.exit(main())")
                .directory(WorkerTestSupport.repoRoot().resolve("py-worker").toFile())
                .redirectError(ProcessBuilder.Redirect.INHERIT);
        Process p = pb.start();
        byte[] out = p.getInputStream().readAllBytes();
        if (!p.waitFor(60, TimeUnit.SECONDS) || p.exitValue() != 0) {
            throw new AssertionError("python -m analytics_worker.catalogue failed: " + new String(out, StandardCharsets.UTF_8));
        }
        return new ObjectMapper().readTree(out);
    }

    static JsonNode shippedWithTheEngine() throws Exception {
        try (InputStream in = PythonCatalogue.class.getResourceAsStream(PythonCatalogue.RESOURCE)) {
            return new ObjectMapper().readTree(in);
        }
    }

    @Test
    void theEnginesCopyIsWhatTheWorkerPackageDeclares() throws Exception {
        JsonNode declared = declaredByThePackage();
        JsonNode shipped = shippedWithTheEngine();
        assertFalse(declared.path("algorithms").isEmpty());
        for (int i = 0; i < Math.max(declared.path("algorithms").size(), shipped.path("algorithms").size()); i++) {
            assertEquals(declared.path("algorithms").path(i), shipped.path("algorithms").path(i),
                    "catalogue drift at entry " + i + ": run scripts/gen-catalogue.sh");
        }
        assertEquals(declared, shipped, "catalogue drift: run scripts/gen-catalogue.sh");
    }

    @Test
    void theRegistryValidatesExactlyTheDeclaredPythonAlgorithms() throws Exception {
        List<AlgorithmSpec> declared = PythonCatalogue.parse(declaredByThePackage());
        AlgorithmRegistry registry = new AlgorithmRegistry(true);
        List<AlgorithmSpec> served = registry.all().stream().filter(s -> !s.nativeImpl()).toList();
        assertEquals(declared.stream().map(AlgorithmSpec::name).sorted().toList(),
                served.stream().map(AlgorithmSpec::name).sorted().toList());
        for (AlgorithmSpec d : declared) {
            assertEquals(d, registry.get(d.name()), d.name());
        }
        // production mode serves everything but the test-only algorithms
        assertEquals(declared.stream().filter(s -> !s.category().equals("test")).map(AlgorithmSpec::name).sorted().toList(),
                new AlgorithmRegistry(false).all().stream().filter(s -> !s.nativeImpl()).map(AlgorithmSpec::name)
                        .sorted().toList());
    }

    @Test
    void aHelloThatDeclaresADefaultDifferentlyIsReported() {
        List<AlgorithmSpec> expected = PythonCatalogue.load();
        java.util.Map<String, AlgorithmSpec> hello = new java.util.TreeMap<>();
        expected.forEach(s -> hello.put(s.name(), s));
        assertEquals(List.of(), PythonCatalogue.differences(expected, hello));
        AlgorithmSpec arima = hello.get("arima");
        List<AlgorithmSpec.ParamSpec> params = new java.util.ArrayList<>(arima.params());
        AlgorithmSpec.ParamSpec periods = params.stream().filter(p -> p.name().equals("periods")).findFirst().orElseThrow();
        params.set(params.indexOf(periods), new AlgorithmSpec.ParamSpec(periods.name(), false, periods.type(), "5",
                periods.help(), periods.min(), periods.max(), periods.minExclusive(), periods.choices(), periods.words()));
        hello.put("arima", new AlgorithmSpec("arima", arima.category(), arima.description(), false, true,
                arima.input(), arima.minPoints(), List.copyOf(params)));
        hello.remove("pca");
        assertEquals(List.of("arima declared differently by the worker", "pca not served by the worker"),
                PythonCatalogue.differences(expected, hello));
    }
}
