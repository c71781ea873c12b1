package analytics.engine.server;

import io.grpc.netty.GrpcHttp2ConnectionHandler;
import io.grpc.netty.InternalProtocolNegotiator;
import io.grpc.netty.InternalProtocolNegotiators;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufUtil;
import io.netty.channel.ChannelHandler;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelPipeline;
import io.netty.buffer.Unpooled;
import io.grpc.netty.ProtocolNegotiationEvent;
import io.netty.handler.codec.ByteToMessageDecoder;
import io.netty.handler.codec.http.HttpObjectAggregator;
import io.netty.handler.codec.http.HttpServerCodec;
import io.netty.util.AsciiString;
import io.netty.util.CharsetUtil;
import java.util.List;

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
 */
final class PortUnificationNegotiator implements InternalProtocolNegotiator.ProtocolNegotiator {

    private static final byte[] PREFACE = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".getBytes(CharsetUtil.US_ASCII);

    private final InternalProtocolNegotiator.ProtocolNegotiator grpc = InternalProtocolNegotiators.serverPlaintext();
    private final HttpEndpoints http;

    PortUnificationNegotiator(HttpEndpoints http) {
        this.http = http;
    }

    @Override
    public AsciiString scheme() {
        return grpc.scheme();
    }

    @Override
    public ChannelHandler newHandler(GrpcHttp2ConnectionHandler grpcHandler) {
        return new Detector(grpc.newHandler(grpcHandler));
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
            ChannelPipeline p = ctx.pipeline();
            if (prefixMatches) {
                p.addAfter(ctx.name(), "grpc-negotiation", grpcNegotiation);
                ctx.fireUserEventTriggered(negotiationEvent);
            } else {
                p.addAfter(ctx.name(), "http1-codec", new HttpServerCodec());
                p.addAfter("http1-codec", "http1-aggregator", new HttpObjectAggregator(64 * 1024));
                p.addAfter("http1-aggregator", "http1-endpoints", http.newHandler());
            }
            // Removing a ByteToMessageDecoder forwards the bytes it buffered to the next handler.
            p.remove(this);
        }
    }
}
