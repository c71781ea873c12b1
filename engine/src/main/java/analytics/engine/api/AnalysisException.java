package analytics.engine.api;

import analytics.engine.proto.ErrorCode;

/** An analysis that cannot be answered: becomes {@code success=false} with this code and message. */
public class AnalysisException extends Exception {
    private final ErrorCode code;

    public AnalysisException(ErrorCode code, String message) {
        super(message, null, false, false);
        this.code = code;
    }

    public ErrorCode code() {
        return code;
    }

    public static AnalysisException invalid(String message) {
        return new AnalysisException(ErrorCode.INVALID_ARGUMENT, message);
    }
}
