package analytics.engine.dispatch;

import analytics.engine.api.AnalysisException;
import analytics.engine.proto.ErrorCode;
import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonSerializer;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializerProvider;
import com.fasterxml.jackson.databind.module.SimpleModule;
import java.io.IOException;

/** Serialises kernel results as the contract's result_json: bare numbers, NaN/Inf as null. */
public final class ResultJson {

    private static final ObjectMapper MAPPER = new ObjectMapper().registerModule(new SimpleModule()
            .addSerializer(Double.class, new FiniteDouble())
            .addSerializer(double.class, new FiniteDouble()));

    private ResultJson() {
    }

    public static String write(Object result) throws AnalysisException {
        try {
            return MAPPER.writeValueAsString(result);
        } catch (JsonProcessingException e) {
            throw new AnalysisException(ErrorCode.INTERNAL, "cannot encode result: " + e.getOriginalMessage());
        }
    }

    public static ObjectMapper mapper() {
        return MAPPER;
    }

    private static final class FiniteDouble extends JsonSerializer<Double> {
        @Override
        public void serialize(Double value, JsonGenerator gen, SerializerProvider serializers) throws IOException {
            if (value == null || !Double.isFinite(value)) {
                gen.writeNull();
            } else {
                gen.writeNumber(value);
            }
        }
    }
}
