package analytics.engine.server;

import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.Status;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;

/**
 * Optional bearer-token authentication (setting auth_token / ANALYTICS_AUTH_TOKEN). When a token is
 * set, every gRPC call except the standard health and reflection services, and GET /metrics, need
 * {@code authorization: Bearer <token>}; otherwise UNAUTHENTICATED (HTTP 401). The token is compared in
 * constant time and never logged.
 */
public final class BearerAuth implements ServerInterceptor {

    private static final Metadata.Key<String> AUTHORIZATION =
            Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);

    private final byte[] token;

    public BearerAuth(String token) {
        this.token = token == null || token.isEmpty() ? null : token.getBytes(StandardCharsets.UTF_8);
    }

    public boolean enabled() {
        return token != null;
    }

    /** True when no token is configured or the header carries the right one. */
    public boolean allows(String authorizationHeader) {
        if (token == null) {
            return true;
        }
        if (authorizationHeader == null || !authorizationHeader.regionMatches(true, 0, "Bearer ", 0, 7)) {
            return false;
        }
        byte[] given = authorizationHeader.substring(7).trim().getBytes(StandardCharsets.UTF_8);
        return MessageDigest.isEqual(given, token);
    }

    @Override
    public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers,
                                                       ServerCallHandler<Q, R> next) {
        String service = call.getMethodDescriptor().getServiceName();
        boolean open = "grpc.health.v1.Health".equals(service) || (service != null && service.startsWith("grpc.reflection."));
        if (token != null && !open && !allows(headers.get(AUTHORIZATION))) {
            call.close(Status.UNAUTHENTICATED.withDescription(
                    "missing or wrong bearer token: send metadata 'authorization: Bearer <token>'"), new Metadata());
            return new ServerCall.Listener<>() {
            };
        }
        return next.startCall(call, headers);
    }
}
