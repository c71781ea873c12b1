package analytics.engine.server;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import analytics.engine.proto.AnalysisRequest;
import analytics.engine.proto.AnalysisResponse;
import analytics.engine.proto.AnalyticsEngineGrpc;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.ForwardingClientCall;
import io.grpc.Grpc;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.SecurityLevel;
import io.grpc.Server;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.ServerInterceptors;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.netty.GrpcSslContexts;
import io.grpc.netty.InternalNettyServerCredentials;
import io.grpc.netty.NettyChannelBuilder;
import io.grpc.netty.NettyServerBuilder;
import io.grpc.protobuf.services.HealthStatusManager;
import io.grpc.stub.MetadataUtils;
import io.netty.handler.ssl.util.SelfSignedCertificate;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.security.KeyStore;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLSession;
import javax.net.ssl.TrustManagerFactory;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * TLS on the shared port: gRPC over TLS (ALPN h2), HTTPS /health and /metrics on the same port, the
 * gRPC transport marked secure, and plaintext clients refused cleanly. The certificate is a fresh
 * self-signed one for "localhost" made at test time (Netty's SelfSignedCertificate).
 */
class TlsTest {

    static final String TOKEN = "tls-test-token-0123456789";
    static SelfSignedCertificate cert;
    static TestEngine engine;
    static ManagedChannel tlsChannel;

    @BeforeAll
    static void start() throws Exception {
        cert = new SelfSignedCertificate("localhost");
        engine = new TestEngine(Map.of("tls_cert", cert.certificate().getPath(), "tls_key", cert.privateKey().getPath(),
                "auth_token", TOKEN), null);
        tlsChannel = NettyChannelBuilder.forAddress("127.0.0.1", engine.server.port())
                .overrideAuthority("localhost")
                .sslContext(GrpcSslContexts.forClient().trustManager(cert.certificate()).build())
                .build();
    }

    @AfterAll
    static void stop() throws Exception {
        tlsChannel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
        engine.close();
        cert.delete();
    }

    static AnalyticsEngineGrpc.AnalyticsEngineBlockingStub authed(ManagedChannel ch) {
        Metadata md = new Metadata();
        md.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + TOKEN);
        return AnalyticsEngineGrpc.newBlockingStub(ch).withInterceptors(MetadataUtils.newAttachHeadersInterceptor(md))
                .withDeadlineAfter(10, TimeUnit.SECONDS);
    }

    /** An SSLContext that trusts exactly the test certificate (no trust-all). */
    static SSLContext trustingTestCert() throws Exception {
        KeyStore ks = KeyStore.getInstance(KeyStore.getDefaultType());
        ks.load(null, null);
        ks.setCertificateEntry("test", cert.cert());
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(ks);
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(null, tmf.getTrustManagers(), null);
        return ctx;
    }

    @Test
    void grpcOverTlsWithBearerToken() {
        AtomicReference<SSLSession> session = new AtomicReference<>();
        ClientInterceptor capture = new ClientInterceptor() {
            @Override
            public <Q, R> ClientCall<Q, R> interceptCall(MethodDescriptor<Q, R> m, io.grpc.CallOptions o,
                                                       io.grpc.Channel next) {
                return new ForwardingClientCall.SimpleForwardingClientCall<>(next.newCall(m, o)) {
                    @Override
                    public void start(Listener<R> listener, Metadata headers) {
                        super.start(new io.grpc.ForwardingClientCallListener.SimpleForwardingClientCallListener<>(listener) {
                            @Override
                            public void onHeaders(Metadata h) {
                                session.set(getAttributes().get(Grpc.TRANSPORT_ATTR_SSL_SESSION));
                                super.onHeaders(h);
                            }
                        }, headers);
                    }
                };
            }
        };
        AnalysisResponse r = authed(tlsChannel).withInterceptors(capture).analyze(AnalysisRequest.newBuilder()
                .setRequestId("tls-1").setAlgorithm("mean").addData(1).addData(2).addData(6).build());
        assertTrue(r.getSuccess(), r.getErrorMessage());
        assertEquals("3.0", r.getResultJson());
        assertNotNull(session.get(), "the client transport has an SSL session");
        assertTrue(session.get().getProtocol().startsWith("TLSv1."), session.get().getProtocol());

        // The token is still enforced over TLS.
        StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> AnalyticsEngineGrpc
                .newBlockingStub(tlsChannel).withDeadlineAfter(10, TimeUnit.SECONDS)
                .analyze(AnalysisRequest.newBuilder().setAlgorithm("mean").addData(1).build()));
        assertEquals(Status.Code.UNAUTHENTICATED, e.getStatus().getCode());
    }

    @Test
    void httpsHealthAndMetricsOnTheSamePort() throws Exception {
        HttpClient client = HttpClient.newBuilder().sslContext(trustingTestCert())
                .connectTimeout(Duration.ofSeconds(5)).build();
        URI base = URI.create("https://localhost:" + engine.server.port());
        for (HttpClient.Version v : HttpClient.Version.values()) {
            // HTTP_2 makes the JDK client offer ALPN h2 and http/1.1 (as curl does): the server picks http/1.1.
            HttpResponse<String> health = client.send(HttpRequest.newBuilder(base.resolve("/health")).version(v)
                    .timeout(Duration.ofSeconds(10)).GET().build(), HttpResponse.BodyHandlers.ofString());
            assertEquals(200, health.statusCode(), health.body());
            assertEquals(HttpClient.Version.HTTP_1_1, health.version());
            assertTrue(health.body().contains("\"status\":\"ok\""), health.body());
        }
        HttpResponse<String> denied = client.send(HttpRequest.newBuilder(base.resolve("/metrics"))
                .timeout(Duration.ofSeconds(10)).GET().build(), HttpResponse.BodyHandlers.ofString());
        assertEquals(401, denied.statusCode());
        HttpResponse<String> metrics = client.send(HttpRequest.newBuilder(base.resolve("/metrics"))
                .header("Authorization", "Bearer " + TOKEN).timeout(Duration.ofSeconds(10)).GET().build(),
                HttpResponse.BodyHandlers.ofString());
        assertEquals(200, metrics.statusCode());
        assertTrue(metrics.body().contains("jvm_"), "Prometheus text");
    }

    @Test
    void plaintextClientsAreRefusedCleanly() throws Exception {
        // A plaintext gRPC client: UNAVAILABLE, no hang.
        ManagedChannel plain = NettyChannelBuilder.forAddress("127.0.0.1", engine.server.port()).usePlaintext().build();
        try {
            StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> authed(plain)
                    .withDeadlineAfter(5, TimeUnit.SECONDS)
                    .analyze(AnalysisRequest.newBuilder().setAlgorithm("mean").addData(1).build()));
            assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode(), e.getStatus().toString());
        } finally {
            plain.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
        }
        // Plain HTTP/1 (curl http://): a 400 that says why, then close.
        String http = engine.get("/health");
        assertTrue(http.startsWith("HTTP/1.1 400"), http);
        assertTrue(http.contains("requires TLS"), http);
        // Garbage: closed without an answer.
        try (Socket s = new Socket()) {
            s.connect(new InetSocketAddress("127.0.0.1", engine.server.port()), 5000);
            s.setSoTimeout(10_000);
            OutputStream out = s.getOutputStream();
            out.write(new byte[] {0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
            out.flush();
            InputStream in = s.getInputStream();
            assertEquals(-1, in.read(), "connection closed");
        }
        // And TLS still works afterwards.
        assertTrue(authed(tlsChannel).analyze(AnalysisRequest.newBuilder().setAlgorithm("max").addData(4).build())
                .getSuccess());
    }

    /** The negotiator marks the gRPC transport as TLS-secured (what grpc's own TLS handler does). */
    @Test
    void grpcTransportIsMarkedSecure() throws Exception {
        AtomicReference<SecurityLevel> level = new AtomicReference<>();
        AtomicReference<SSLSession> session = new AtomicReference<>();
        ServerInterceptor record = new ServerInterceptor() {
            @Override
            public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers,
                                                             ServerCallHandler<Q, R> next) {
                level.set(call.getSecurityLevel());
                session.set(call.getAttributes().get(Grpc.TRANSPORT_ATTR_SSL_SESSION));
                return next.startCall(call, headers);
            }
        };
        HttpEndpoints http = new HttpEndpoints(() -> new HttpEndpoints.Health(true, "{}"), () -> "", new BearerAuth(""));
        HealthStatusManager health = new HealthStatusManager();
        Server server = NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0),
                        InternalNettyServerCredentials.create(new PortUnificationNegotiator(http,
                                PortUnificationNegotiator.serverTls(cert.certificate(), cert.privateKey()))))
                .addService(ServerInterceptors.intercept(health.getHealthService(), record))
                .build().start();
        ManagedChannel ch = NettyChannelBuilder.forAddress("127.0.0.1", server.getPort()).overrideAuthority("localhost")
                .sslContext(GrpcSslContexts.forClient().trustManager(cert.certificate()).build()).build();
        try {
            HealthGrpc.newBlockingStub(ch).withDeadlineAfter(10, TimeUnit.SECONDS)
                    .check(HealthCheckRequest.getDefaultInstance());
            assertEquals(SecurityLevel.PRIVACY_AND_INTEGRITY, level.get());
            assertNotNull(session.get());
            assertTrue(session.get().getCipherSuite().startsWith("TLS_"), session.get().getCipherSuite());
        } finally {
            ch.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
            server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
        }
    }

    @Test
    void badTlsFilesFailStartupWithAClearMessage() {
        Exception e = assertThrows(Exception.class, () -> new TestEngine(Map.of("tls_cert", "/nonexistent/cert.pem",
                "tls_key", cert.privateKey().getPath()), null).close());
        assertTrue(e.getMessage().contains("/nonexistent/cert.pem"), e.getMessage());
        Exception bad = assertThrows(Exception.class, () -> new TestEngine(Map.of("tls_cert", cert.privateKey().getPath(),
                "tls_key", cert.certificate().getPath()), null).close());
        assertTrue(bad.getMessage().contains("cannot load TLS certificate"), bad.getMessage());
    }
}
