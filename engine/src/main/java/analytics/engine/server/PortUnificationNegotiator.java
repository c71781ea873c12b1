package analytics.engine.server;

import io.grpc.Attributes;
import io.grpc.Grpc;
import io.grpc.InternalChannelz;
import io.grpc.SecurityLevel;
import io.grpc.internal.GrpcAttributes;
import io.grpc.netty.GrpcHttp2ConnectionHandler;
import io.grpc.netty.InternalProtocolNegotiationEvent;
import io.grpc.netty.InternalProtocolNegotiator;
import io.grpc.netty.InternalProtocolNegotiators;
import io.grpc.netty.ProtocolNegotiationEvent;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufUtil;
import io.netty.buffer.Unpooled;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandler;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.ChannelPipeline;
import io.netty.handler.codec.AdaptiveCumulator;
import io.netty.handler.codec.ByteToMessageDecoder;
import io.netty.handler.codec.http.DefaultFullHttpResponse;
import io.netty.handler.codec.http.FullHttpResponse;
import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.handler.codec.http.HttpHeaderValues;
import io.netty.handler.codec.http.HttpMessage;
import io.netty.handler.codec.http.HttpObjectAggregator;
import io.netty.handler.codec.http.HttpResponseStatus;
import io.netty.handler.codec.http.HttpVersion;
import io.netty.handler.codec.http.HttpServerCodec;
import io.netty.handler.codec.http2.Http2SecurityUtil;
import io.netty.handler.ssl.ApplicationProtocolConfig;
import io.netty.handler.ssl.ApplicationProtocolNames;
import io.netty.handler.ssl.SslContext;
import io.netty.handler.ssl.SslContextBuilder;
import io.netty.handler.ssl.SslHandler;
import io.netty.handler.ssl.SslHandshakeCompletionEvent;
import io.netty.handler.ssl.SslProvider;
import io.netty.handler.ssl.SupportedCipherSuiteFilter;
import io.netty.util.AsciiString;
import io.netty.util.CharsetUtil;
import io.netty.util.ReferenceCountUtil;
import java.io.File;
import java.util.ArrayList;
import java.util.List;
import javax.net.ssl.SSLException;
import javax.net.ssl.SSLSession;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Serves gRPC (HTTP/2) and plain HTTP/1.1 (/health, /metrics) on one TCP port.
 *
 * <p>Why this way: grpc-java's Netty server only speaks HTTP/2, and operators expect
 * {@code curl http://127.0.0.1:50051/health} on the gRPC port with no proxy in front. grpc-netty lets a
 * server install its own {@link InternalProtocolNegotiator.ProtocolNegotiator} (via
 * {@code InternalNettyServerCredentials.create}); ours puts a tiny decoder first in each connection's
 * pipeline that waits for the first bytes. If they are the HTTP/2 client preface ("PRI * HTTP/2.0"),
 * it replaces itself with grpc's own plaintext negotiation handler and replays the bytes, so gRPC sees
 * an untouched connection. Anything else gets Netty's HTTP/1.1 codec and {@link HttpEndpoints}.
 *
 * <p>Pitfalls handled: (1) these are {@code @Internal} grpc-netty APIs, so grpc, Netty and this class are
 * pinned together in the pom and covered by end-to-end tests (curl-like HTTP/1 and real gRPC clients on
 * the same port); (2) grpc buffers writes until its negotiation completes, so HTTP/1 handlers write with
 * {@code ctx.write*}, never {@code channel().write*}; (3) grpc closes a connection whose HTTP/2 handshake
 * did not finish within its handshake timeout, which would also cut idle HTTP/1 keep-alive connections:
 * HTTP/1 responses therefore carry {@code Connection: close} and each connection serves one request.
 *
 * <p><b>TLS</b> (settings tls_cert/tls_key): the same port then speaks TLS only. A {@link TlsFront} sits
 * first: it peeks at the first bytes (a plaintext client gets a one-line HTTP 400 "this port requires
 * TLS" or, for anything else, a plain close), installs an {@link SslHandler}, and after the handshake hands
 * over to the same HTTP/2-or-HTTP/1 detection as above. ALPN offers {@code http/1.1} and {@code h2}
 * in that order of server preference: gRPC clients offer only {@code h2} and get it, while curl/browsers,
 * which offer both, get HTTP/1.1 and therefore reach /health and /metrics. The gRPC transport is marked
 * secure: the negotiation event carries {@code SecurityLevel.PRIVACY_AND_INTEGRITY}, the SSL session and
 * channelz TLS info, exactly as grpc's own server TLS handler sets them.
 */
final class PortUnificationNegotiator implements InternalProtocolNegotiator.ProtocolNegotiator {

    private static final Logger LOG = LoggerFactory.getLogger(PortUnificationNegotiator.class);
    private static final byte[] PREFACE = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".getBytes(CharsetUtil.US_ASCII);

    private final InternalProtocolNegotiator.ProtocolNegotiator grpc = InternalProtocolNegotiators.serverPlaintext();
    private final HttpEndpoints http;
    private final SslContext tls; // null = plaintext port

    PortUnificationNegotiator(HttpEndpoints http) {
        this(http, null);
    }

    PortUnificationNegotiator(HttpEndpoints http, SslContext tls) {
        this.http = http;
        this.tls = tls;
    }

    /**
     * The server TLS context for a PEM certificate chain and a PKCS#8 PEM key: JDK provider, TLS 1.2/1.3
     * with the HTTP/2-approved cipher suites, ALPN {@code http/1.1} and {@code h2} (see the class comment).
     */
    static SslContext serverTls(File certChain, File key) throws SSLException {
        return SslContextBuilder.forServer(certChain, key)
                .sslProvider(SslProvider.JDK)
                .protocols("TLSv1.3", "TLSv1.2")
                .ciphers(Http2SecurityUtil.CIPHERS, SupportedCipherSuiteFilter.INSTANCE)
                .applicationProtocolConfig(new ApplicationProtocolConfig(
                        ApplicationProtocolConfig.Protocol.ALPN,
                        ApplicationProtocolConfig.SelectorFailureBehavior.NO_ADVERTISE,
                        ApplicationProtocolConfig.SelectedListenerFailureBehavior.ACCEPT,
                        ApplicationProtocolNames.HTTP_1_1, ApplicationProtocolNames.HTTP_2))
                .build();
    }

    @Override
    public AsciiString scheme() {
        return tls == null ? grpc.scheme() : AsciiString.of("https");
    }

    @Override
    public ChannelHandler newHandler(GrpcHttp2ConnectionHandler grpcHandler) {
        // The HTTP/2 decoder keeps a partial frame across socket reads. With Netty's default (merge) cumulator
        // every read that follows one is copied into a fresh buffer, because the DATA frames already handed
        // on hold slices of the old one: an 8 MB request was copied once more before gRPC saw it (9 % of
        // the engine's CPU, as much as decoding the doubles; bench/README.md, "Large requests"). The adaptive
        // cumulator links reads of 1 KiB and more into a composite instead, and still merges smaller ones
        // so that a peer sending a byte at a time cannot make it track one buffer per byte.
        grpcHandler.setCumulator(new AdaptiveCumulator(1024));
        if (tls == null) {
            return new Detector(grpc.newHandler(grpcHandler));
        }
        // Not grpc.newHandler(): its WaitUntilActiveHandler stamps SecurityLevel.NONE on the connection.
        // TlsFront sets the addresses and the TLS security level itself.
        return new TlsFront(new Detector(InternalProtocolNegotiators.grpcNegotiationHandler(grpcHandler)));
    }

    @Override
    public void close() {
        grpc.close();
    }

    /**
     * Reads just enough of the first bytes to tell HTTP/2 from HTTP/1, then gets out of the way.
     *
     * <p>grpc fires its {@link ProtocolNegotiationEvent} down the pipeline as soon as the connection is set
     * up, before any byte arrives; we hold it and hand it to grpc's negotiation handler once we know the
     * connection is HTTP/2, then remove ourselves, which replays the buffered bytes to grpc.
     */
    private final class Detector extends ByteToMessageDecoder {
        private final ChannelHandler grpcNegotiation;
        private Object negotiationEvent;

        Detector(ChannelHandler grpcNegotiation) {
            this.grpcNegotiation = grpcNegotiation;
        }

        @Override
        public void userEventTriggered(ChannelHandlerContext ctx, Object evt) throws Exception {
            if (evt instanceof ProtocolNegotiationEvent && negotiationEvent == null) {
                negotiationEvent = evt;
                return;
            }
            super.userEventTriggered(ctx, evt);
        }

        @Override
        protected void decode(ChannelHandlerContext ctx, ByteBuf in, List<Object> out) {
            int n = Math.min(in.readableBytes(), PREFACE.length);
            boolean prefixMatches = ByteBufUtil.equals(in, in.readerIndex(), Unpooled.wrappedBuffer(PREFACE), 0, n);
            if (prefixMatches && n < PREFACE.length) {
                return; // could still be HTTP/2: wait for more bytes
            }
            if (prefixMatches && negotiationEvent == null) {
                return; // grpc has not started negotiation yet; bytes stay buffered until it does
            }
            Boolean http1 = prefixMatches ? Boolean.FALSE : looksLikeHttp1(in);
            if (http1 == null) {
                return; // an HTTP method may still be coming
            }
            if (!prefixMatches && !http1) {
                // Neither HTTP/2 nor an HTTP/1 request line: don't wait for a line end that may never come.
                LOG.debug("connection from {}: not HTTP, closed", ctx.channel().remoteAddress());
                in.skipBytes(in.readableBytes());
                ctx.close();
                return;
            }
            ChannelPipeline p = ctx.pipeline();
            if (prefixMatches) {
                p.addAfter(ctx.name(), "grpc-negotiation", grpcNegotiation);
                ctx.fireUserEventTriggered(negotiationEvent);
            } else {
                p.addAfter(ctx.name(), "http1-codec", new HttpServerCodec());
                p.addAfter("http1-codec", "http1-aggregator", new OneShotAggregator());
                p.addAfter("http1-aggregator", "http1-endpoints", http.newHandler());
            }
            // Removing a ByteToMessageDecoder forwards the bytes it buffered to the next handler.
            p.remove(this);
        }
    }

    /**
     * Whether the first bytes start like an HTTP/1 request line ("METHOD "): TRUE, FALSE, or null when
     * more bytes are needed to tell.
     */
    static Boolean looksLikeHttp1(ByteBuf in) {
        int n = Math.min(in.readableBytes(), 17);
        for (int i = 0; i < n; i++) {
            byte b = in.getByte(in.readerIndex() + i);
            if (b == ' ' && i > 0) {
                return Boolean.TRUE;
            }
            if (!(b >= 'A' && b <= 'Z' || b == '-' || b == '_')) {
                return Boolean.FALSE;
            }
        }
        return n >= 17 ? Boolean.FALSE : null;
    }

    /**
     * The HTTP/1 aggregator (requests up to 64 KiB). A larger request gets 413 and the connection is closed
     * at once: Netty's default would keep a keep-alive connection open to swallow the announced body.
     */
    private static final class OneShotAggregator extends HttpObjectAggregator {
        OneShotAggregator() {
            super(64 * 1024);
        }

        @Override
        protected void handleOversizedMessage(ChannelHandlerContext ctx, HttpMessage oversized) {
            FullHttpResponse resp = new DefaultFullHttpResponse(HttpVersion.HTTP_1_1,
                    HttpResponseStatus.REQUEST_ENTITY_TOO_LARGE, Unpooled.EMPTY_BUFFER);
            resp.headers().setInt(HttpHeaderNames.CONTENT_LENGTH, 0);
            resp.headers().set(HttpHeaderNames.CONNECTION, HttpHeaderValues.CLOSE);
            ctx.writeAndFlush(resp).addListener(ChannelFutureListener.CLOSE);
        }
    }

    /**
     * TLS in front of the {@link Detector}: probes the first bytes, installs the {@link SslHandler}, waits
     * for the handshake, then passes grpc's negotiation event (now carrying the TLS attributes) and any
     * decrypted bytes to the detector and removes itself.
     */
    private final class TlsFront extends ChannelInboundHandlerAdapter {
        private final Detector detector;
        private ProtocolNegotiationEvent negotiationEvent;
        private final List<Object> pending = new ArrayList<>();
        private boolean done;

        TlsFront(Detector detector) {
            this.detector = detector;
        }

        @Override
        public void handlerAdded(ChannelHandlerContext ctx) {
            ctx.pipeline().addBefore(ctx.name(), "tls-probe", new TlsProbe());
        }

        @Override
        public void userEventTriggered(ChannelHandlerContext ctx, Object evt) throws Exception {
            if (evt instanceof ProtocolNegotiationEvent pne && !done) {
                negotiationEvent = pne;
                return;
            }
            if (evt instanceof SslHandshakeCompletionEvent hs && !done) {
                if (!hs.isSuccess()) {
                    LOG.debug("TLS handshake with {} failed: {}", ctx.channel().remoteAddress(), hs.cause().toString());
                    ctx.close();
                    return;
                }
                handshakeDone(ctx);
                return;
            }
            super.userEventTriggered(ctx, evt);
        }

        private void handshakeDone(ChannelHandlerContext ctx) {
            done = true;
            SslHandler ssl = ctx.pipeline().get(SslHandler.class);
            SSLSession session = ssl.engine().getSession();
            ProtocolNegotiationEvent pne = negotiationEvent != null ? negotiationEvent
                    : InternalProtocolNegotiationEvent.getDefault();
            Attributes attrs = InternalProtocolNegotiationEvent.getAttributes(pne).toBuilder()
                    .set(Grpc.TRANSPORT_ATTR_LOCAL_ADDR, ctx.channel().localAddress())
                    .set(Grpc.TRANSPORT_ATTR_REMOTE_ADDR, ctx.channel().remoteAddress())
                    .set(GrpcAttributes.ATTR_SECURITY_LEVEL, SecurityLevel.PRIVACY_AND_INTEGRITY)
                    .set(Grpc.TRANSPORT_ATTR_SSL_SESSION, session)
                    .build();
            pne = InternalProtocolNegotiationEvent.withAttributes(pne, attrs);
            pne = InternalProtocolNegotiationEvent.withSecurity(pne,
                    new InternalChannelz.Security(new InternalChannelz.Tls(session)));
            ctx.pipeline().addAfter(ctx.name(), "protocol-detector", detector);
            ctx.fireUserEventTriggered(pne);
            for (Object m : pending) {
                ctx.fireChannelRead(m);
            }
            pending.clear();
            ctx.pipeline().remove(this);
        }

        @Override
        public void channelRead(ChannelHandlerContext ctx, Object msg) {
            if (done) {
                ctx.fireChannelRead(msg);
            } else {
                pending.add(msg); // decrypted bytes that arrived together with the handshake's last flight
            }
        }

        @Override
        public void handlerRemoved(ChannelHandlerContext ctx) {
            for (Object m : pending) {
                ReferenceCountUtil.release(m);
            }
            pending.clear();
        }

        @Override
        public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
            // SslHandler reports bad records and handshake failures here; they are the client's problem.
            LOG.debug("TLS connection from {} closed: {}", ctx.channel().remoteAddress(), cause.toString());
            ctx.close();
        }
    }

    /**
     * First handler of a TLS port: a TLS record goes on to the {@link SslHandler}; a plaintext client is
     * told (HTTP/1 gets a 400 saying TLS is required) and disconnected, without reaching grpc or the log
     * above debug level.
     */
    private final class TlsProbe extends ByteToMessageDecoder {
        @Override
        protected void decode(ChannelHandlerContext ctx, ByteBuf in, List<Object> out) {
            if (in.readableBytes() < 5) {
                return; // SslHandler.isEncrypted needs a full record header
            }
            ChannelPipeline p = ctx.pipeline();
            if (SslHandler.isEncrypted(in, false)) {
                p.addAfter(ctx.name(), "tls", tls.newHandler(ctx.alloc()));
                p.remove(this); // hands the buffered ClientHello to the SslHandler
                return;
            }
            byte first = in.getByte(in.readerIndex());
            boolean http1 = first >= 'A' && first <= 'Z' && !ByteBufUtil.equals(in, in.readerIndex(),
                    Unpooled.wrappedBuffer(PREFACE), 0, 5);
            LOG.debug("plaintext connection from {} to the TLS port refused", ctx.channel().remoteAddress());
            in.skipBytes(in.readableBytes());
            if (http1) {
                byte[] body = "this port requires TLS: use https:// (or a gRPC client with TLS)\n"
                        .getBytes(CharsetUtil.US_ASCII);
                ByteBuf resp = Unpooled.copiedBuffer(("HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
                        + "Content-Length: " + body.length + "\r\nConnection: close\r\n\r\n")
                        .getBytes(CharsetUtil.US_ASCII), body);
                ctx.writeAndFlush(resp).addListener(ChannelFutureListener.CLOSE);
            } else {
                ctx.close();
            }
        }

        @Override
        public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
            LOG.debug("connection from {} closed: {}", ctx.channel().remoteAddress(), cause.toString());
            ctx.close();
        }
    }
}
