"""Framing and message codec of the engine <-> worker protocol (see PROTOCOL.md).

A frame is a 4-byte big-endian unsigned length followed by exactly one msgpack map.
Anything else is a protocol error: the caller logs it (length and type only) and closes.
"""

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
