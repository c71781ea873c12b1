package analytics.engine.server;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandler;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.SimpleChannelInboundHandler;
import io.netty.handler.codec.http.DefaultFullHttpResponse;
import io.netty.handler.codec.http.FullHttpRequest;
import io.netty.handler.codec.http.FullHttpResponse;
import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.handler.codec.http.HttpHeaderValues;
import io.netty.handler.codec.http.HttpMethod;
import io.netty.handler.codec.http.HttpResponseStatus;
import io.netty.handler.codec.http.HttpVersion;
import io.netty.handler.codec.http.QueryStringDecoder;
import java.nio.charset.StandardCharsets;
import java.util.function.Supplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The HTTP/1.1 side of the shared port: {@code GET /health} (JSON, 200 when ready, 503 when not) and
 * {@code GET /metrics} (Prometheus text). Everything else is 404/405. Each response closes the
 * connection (see {@link PortUnificationNegotiator} for why).
 */
public final class HttpEndpoints {

    private static final Logger LOG = LoggerFactory.getLogger(HttpEndpoints.class);

    /** A health answer: ready decides 200 vs 503. */
    public record Health(boolean ready, String json) {
    }

    private final Supplier<Health> health;
    private final Supplier<String> metrics;
    private final BearerAuth auth;

    public HttpEndpoints(Supplier<Health> health, Supplier<String> metrics, BearerAuth auth) {
        this.health = health;
        this.metrics = metrics;
        this.auth = auth;
    }

    ChannelHandler newHandler() {
        return new Handler();
    }

    private final class Handler extends SimpleChannelInboundHandler<FullHttpRequest> {
        @Override
        protected void channelRead0(ChannelHandlerContext ctx, FullHttpRequest req) {
            if (!req.decoderResult().isSuccess()) {
                send(ctx, HttpResponseStatus.BAD_REQUEST, "text/plain", "bad HTTP request\n", req.method());
                return;
            }
            String path = new QueryStringDecoder(req.uri()).path();
            boolean getOrHead = req.method().equals(HttpMethod.GET) || req.method().equals(HttpMethod.HEAD);
            switch (path) {
                case "/health", "/healthz", "/ready" -> {
                    if (!getOrHead) {
                        send(ctx, HttpResponseStatus.METHOD_NOT_ALLOWED, "text/plain", "use GET\n", req.method());
                        return;
                    }
                    Health h = health.get();
                    send(ctx, h.ready() ? HttpResponseStatus.OK : HttpResponseStatus.SERVICE_UNAVAILABLE,
                            "application/json", h.json() + "\n", req.method());
                }
                case "/metrics" -> {
                    if (!getOrHead) {
                        send(ctx, HttpResponseStatus.METHOD_NOT_ALLOWED, "text/plain", "use GET\n", req.method());
                        return;
                    }
                    if (!auth.allows(req.headers().get(HttpHeaderNames.AUTHORIZATION))) {
                        send(ctx, HttpResponseStatus.UNAUTHORIZED, "text/plain",
                                "missing or wrong 'Authorization: Bearer <token>'\n", req.method());
                        return;
                    }
                    send(ctx, HttpResponseStatus.OK, "text/plain; version=0.0.4; charset=utf-8", metrics.get(),
                            req.method());
                }
                default -> send(ctx, HttpResponseStatus.NOT_FOUND, "text/plain",
                        "not found; this port serves gRPC (analytics.AnalyticsEngine), GET /health and GET /metrics\n",
                        req.method());
            }
        }

        @Override
        public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
            LOG.debug("HTTP/1 connection error: {}", cause.toString());
            ctx.close();
        }
    }

    private static void send(ChannelHandlerContext ctx, HttpResponseStatus status, String type, String body,
                             HttpMethod method) {
        byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
        ByteBuf content = method.equals(HttpMethod.HEAD) ? Unpooled.EMPTY_BUFFER : Unpooled.wrappedBuffer(bytes);
        FullHttpResponse resp = new DefaultFullHttpResponse(HttpVersion.HTTP_1_1, status, content);
        resp.headers().set(HttpHeaderNames.CONTENT_TYPE, type);
        resp.headers().setInt(HttpHeaderNames.CONTENT_LENGTH, bytes.length);
        resp.headers().set(HttpHeaderNames.CONNECTION, HttpHeaderValues.CLOSE);
        // ctx.writeAndFlush, not channel().writeAndFlush: grpc's write buffer sits further down the pipeline.
        ctx.writeAndFlush(resp).addListener(ChannelFutureListener.CLOSE);
    }
}
