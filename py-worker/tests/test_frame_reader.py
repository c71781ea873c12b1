"""FrameReader (protocol.py): the worker's one-recv-per-frame reader, against real socket pairs."""

import socket

import pytest

from analytics_worker.protocol import ConnectionClosed, FrameReader, ProtocolError, encode_frame


def frame(msg):
    header, body = encode_frame(msg)
    return header + body


def ping(i, pad=0):
    return {"type": "ping", "id": "p%d" % i + "x" * pad}


class CountingSocket:
    """A socket that counts recv_into calls."""

    def __init__(self, sock):
        self.sock = sock
        self.calls = 0

    def recv_into(self, buf, n, flags=0):
        self.calls += 1
        return self.sock.recv_into(buf, n, flags)


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def test_two_small_frames_in_one_recv(pair):
    a, b = pair
    counted = CountingSocket(a)
    r = FrameReader(counted, 1 << 20)
    b.sendall(frame(ping(1)) + frame(ping(2)))
    assert r.read() == ping(1)
    assert counted.calls == 1, "header and body of a small frame come in one recv"
    assert r.read() == ping(2)
    assert counted.calls == 1, "the second frame was already buffered"


def test_frame_arriving_byte_by_byte(pair):
    a, b = pair
    r = FrameReader(a, 1 << 20)
    data = frame(ping(3, pad=50))
    for i in range(len(data)):
        b.sendall(data[i:i + 1])
        got = r.read_nowait(1 << 20)
        assert (got is None) == (i < len(data) - 1)
    assert got == ping(3, pad=50)


def test_frames_straddling_the_buffer_end_and_larger_than_it(pair):
    a, b = pair
    r = FrameReader(a, 1 << 20, size=64)
    msgs = [ping(i, pad=(i * 7) % 40) for i in range(20)] + [ping(99, pad=5000), ping(100)]
    b.sendall(b"".join(frame(m) for m in msgs))
    assert [r.read() for _ in msgs] == msgs


def test_eof_at_a_boundary_and_inside_a_frame(pair):
    a, b = pair
    r = FrameReader(a, 1 << 20)
    data = frame(ping(4))
    b.sendall(data + data[:2])
    b.shutdown(socket.SHUT_WR)
    assert r.read() == ping(4)
    with pytest.raises(ProtocolError, match="truncated frame: EOF after 2 of 4 header bytes"):
        r.read()


def test_eof_inside_a_body(pair):
    a, b = pair
    r = FrameReader(a, 1 << 20)
    data = frame(ping(5))
    b.sendall(data[:-3])
    b.shutdown(socket.SHUT_WR)
    with pytest.raises(ProtocolError, match="truncated frame: EOF after %d of %d body bytes" % (len(data) - 7, len(data) - 4)):
        r.read()


def test_clean_eof(pair):
    a, b = pair
    b.shutdown(socket.SHUT_WR)
    with pytest.raises(ConnectionClosed):
        FrameReader(a, 1 << 20).read()


def test_bad_lengths(pair):
    a, b = pair
    b.sendall(b"\0\0\0\0")
    with pytest.raises(ProtocolError, match="frame length 0"):
        FrameReader(a, 1 << 20).read()


def test_oversize_length(pair):
    a, b = pair
    b.sendall(b"\0\1\0\0")
    with pytest.raises(ProtocolError, match="exceeds the maximum 1000"):
        FrameReader(a, 1000).read()


def test_nowait_leaves_a_long_frame_for_read(pair):
    a, b = pair
    r = FrameReader(a, 1 << 20)
    big = ping(6, pad=3000)
    b.sendall(frame(big) + frame(ping(7)))
    assert r.read_nowait(1024) is None, "longer than the limit: left for read()"
    assert r.read() == big
    assert r.read_nowait(1024) == ping(7)
    assert r.read_nowait(1024) is None, "nothing more: no blocking"
