"""Framing and message codec of the engine <-> worker protocol (see PROTOCOL.md).

A frame is a 4-byte big-endian unsigned length followed by exactly one msgpack map.
Anything else is a protocol error: the caller logs it (length and type only) and closes.
"""

import socket
import struct

import msgpack

PROTOCOL_VERSION = 1
DEFAULT_MAX_FRAME = 256 * 1024 * 1024

_HEADER = struct.Struct(">I")
# Engine -> worker message types the worker understands.
INBOUND_TYPES = frozenset({"request", "ping", "shutdown", "cancel"})


class ProtocolError(Exception):
    """A frame that violates the protocol; the connection must be closed."""


class ConnectionClosed(Exception):
    """The peer closed the connection (clean EOF between frames)."""


def _recv_exact(sock, n, what):
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        r = sock.recv_into(view[got:], n - got)
        if r == 0:
            if got == 0 and what == "header":
                raise ConnectionClosed()
            raise ProtocolError("truncated frame: EOF after %d of %d %s bytes" % (got, n, what))
        got += r
    return buf


def read_frame(sock, max_frame):
    """Read one frame and return its decoded body (a dict with a str 'type').

    Raises ConnectionClosed on EOF at a frame boundary, ProtocolError on anything malformed.
    """
    header = _recv_exact(sock, 4, "header")
    (length,) = _HEADER.unpack(header)
    if length == 0:
        raise ProtocolError("frame length 0")
    if length > max_frame:
        raise ProtocolError("frame length %d exceeds the maximum %d" % (length, max_frame))
    body = _recv_exact(sock, length, "body")
    return decode_body(body, length)


class FrameReader:
    """Reads frames from one socket through a reusable buffer: a small frame, with whatever followed it, arrives
    in one ``recv_into`` (``read_frame`` above needs two, the header and then the body, and a new buffer each).
    Bytes read past a frame stay buffered for the next call. A frame longer than the buffer gets a buffer of
    its own, filled straight from the socket.

    Not thread-safe; the worker's SIGIO handler uses ``read_nowait`` only while ``read`` is not running."""

    BUFFER_BYTES = 65536

    def __init__(self, sock, max_frame, size=BUFFER_BYTES):
        self.sock = sock
        self.max_frame = max_frame
        self.buf = bytearray(size)
        self.view = memoryview(self.buf)
        self.start = 0  # buffered, unread bytes are buf[start:end]
        self.end = 0

    def buffered(self):
        return self.end - self.start

    def _length(self):
        """The length of the buffered frame's body, or None while its header is incomplete."""
        if self.end - self.start < 4:
            return None
        (length,) = _HEADER.unpack_from(self.buf, self.start)
        if length == 0:
            raise ProtocolError("frame length 0")
        if length > self.max_frame:
            raise ProtocolError("frame length %d exceeds the maximum %d" % (length, self.max_frame))
        return length

    def _take(self, length):
        """Decodes the complete buffered frame of body ``length`` and consumes it."""
        begin = self.start + 4
        self.start = begin + length
        if self.start == self.end:
            self.start = self.end = 0
        with self.view[begin:begin + length] as body:
            return decode_body(body, length)

    def _compact(self):
        if self.start:
            n = self.end - self.start
            self.buf[:n] = self.view[self.start:self.end].tobytes()  # a copy: the two ranges may overlap
            self.start, self.end = 0, n

    def _fill(self, flags=0):
        """One recv into the free tail of the buffer; returns the byte count (0 = EOF)."""
        if self.end == len(self.buf):
            self._compact()
        n = self.sock.recv_into(self.view[self.end:], len(self.buf) - self.end, flags)
        self.end += n
        return n

    def read(self):
        """Blocks for one frame and returns its decoded body, as ``read_frame`` (same errors)."""
        while True:
            length = self._length()
            if length is not None:
                if self.end - self.start >= 4 + length:
                    return self._take(length)
                if 4 + length > len(self.buf):
                    return self._read_large(length)
                if self.start + 4 + length > len(self.buf):
                    self._compact()
            had = self.end - self.start
            if self._fill() == 0:
                if had == 0:
                    raise ConnectionClosed()
                if had < 4:
                    raise ProtocolError("truncated frame: EOF after %d of 4 header bytes" % had)
                raise ProtocolError("truncated frame: EOF after %d of %d body bytes" % (had - 4, length))

    def _read_large(self, length):
        body = bytearray(length)
        got = self.end - self.start - 4
        body[:got] = self.view[self.start + 4:self.end]
        self.start = self.end = 0
        view = memoryview(body)
        while got < length:
            r = self.sock.recv_into(view[got:], length - got)
            if r == 0:
                raise ProtocolError("truncated frame: EOF after %d of %d body bytes" % (got, length))
            got += r
        view.release()
        return decode_body(body, length)

    def read_nowait(self, max_length):
        """A complete frame of at most ``max_length`` body bytes without blocking, or None: none complete yet, a
        longer one (left for ``read``), EOF or a socket error (``read`` reports those). Raises ProtocolError."""
        while True:
            length = self._length()
            if length is not None:
                if length > max_length:
                    return None
                if self.end - self.start >= 4 + length:
                    return self._take(length)
                if self.start + 4 + length > len(self.buf):
                    self._compact()
            try:
                if self._fill(socket.MSG_DONTWAIT) == 0:
                    return None
            except OSError:  # nothing waiting (BlockingIOError), interrupted, or broken: read() reports the latter
                return None


def decode_body(body, length=None):
    length = len(body) if length is None else length
    try:
        msg = msgpack.unpackb(body, raw=False, strict_map_key=False, use_list=True)
    except Exception as e:  # ExtraData, FormatError, StackError, UnicodeDecodeError, ...
        raise ProtocolError("frame of %d bytes is not valid msgpack (%s)" % (length, type(e).__name__))
    if not isinstance(msg, dict):
        raise ProtocolError("frame of %d bytes is a msgpack %s, not a map" % (length, type(msg).__name__))
    mtype = msg.get("type")
    if not isinstance(mtype, str) or mtype not in INBOUND_TYPES:
        shown = mtype if isinstance(mtype, str) else type(mtype).__name__
        raise ProtocolError("frame of %d bytes has unknown type %.40r" % (length, shown))
    return msg


def encode_frame(msg):
    body = msgpack.packb(msg, use_bin_type=True)
    return _HEADER.pack(len(body)), body


def write_raw(sock, header, body):
    if len(body) <= 65536:
        sock.sendall(header + body)
    else:
        sock.sendall(header)
        sock.sendall(body)
