"""In-process tests of the request handler over a socketpair (paths a real worker cannot reach)."""

import json
import socket
import struct

import msgpack
import numpy as np
import pytest

from analytics_worker import core, server
from analytics_worker.protocol import ProtocolError, decode_body

server.load_algorithms()


def _pair(max_frame=1 << 20):
    a, b = socket.socketpair()
    w = server.Worker(a, 5, max_frame, False, server.Log(5))
    return w, a, b


def _recv(sock):
    (n,) = struct.unpack(">I", sock.recv(4))
    buf = b""
    while len(buf) < n:
        buf += sock.recv(n - len(buf))
    return msgpack.unpackb(buf, raw=False)


def _req(**kw):
    msg = {"type": "request", "id": "u1", "algorithm": "mean", "params": {},
           "data": np.array([1.0, 2.0], dtype="<f8").tobytes(), "timeout_ms": 1000}
    msg.update(kw)
    return msg


def test_internal_error_traceback_goes_to_stderr_not_client(monkeypatch, capsys):
    def boom(inp):
        return 1 / 0
    monkeypatch.setattr(core.REGISTRY["mean"], "func", boom)
    w, a, b = _pair()
    try:
        w.handle_request(_req())
        r = _recv(b)
        assert r["ok"] is False and r["error_code"] == "INTERNAL"
        assert r["error_message"] == "internal error in mean: ZeroDivisionError"
        err = capsys.readouterr().err
        assert "Traceback" in err and "ZeroDivisionError" in err and "analytics-worker[5]" in err
        assert w.requests == 1
    finally:
        a.close()
        b.close()


def test_result_too_large_for_a_frame_is_an_error_response(monkeypatch):
    monkeypatch.setattr(core.REGISTRY["mean"], "func", lambda inp: list(range(100000)))
    w, a, b = _pair(max_frame=65536)
    try:
        w.handle_request(_req())
        r = _recv(b)
        assert r["ok"] is False and r["error_code"] == "INTERNAL"
        assert "too large for one frame" in r["error_message"]
    finally:
        a.close()
        b.close()


def test_non_json_result_is_internal(monkeypatch):
    monkeypatch.setattr(core.REGISTRY["mean"], "func", lambda inp: {"x": object()})
    w, a, b = _pair()
    try:
        w.handle_request(_req())
        r = _recv(b)
        assert r["error_code"] == "INTERNAL" and r["error_message"] == "internal error in mean: TypeError"
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("body,needle", [
    (b"\xa2\xff\xfe", "not valid msgpack"),                      # str with invalid UTF-8
    (b"\x91" * 5000 + b"\xc0", "not valid msgpack"),            # nesting deeper than the unpacker allows
    (msgpack.packb({"type": "ping", "id": "x"}) + b"\x00", "not valid msgpack"),
    (b"\x81\x91\x01\x01", "not valid msgpack"),                 # a map whose key is a list
    (msgpack.packb("hello"), "not a map"),
    (msgpack.packb({"type": 5}), "unknown type"),
    (msgpack.packb({"type": "hello"}), "unknown type"),       # hello is worker -> engine only
])
def test_decode_body_rejections(body, needle):
    with pytest.raises(ProtocolError, match=needle):
        decode_body(body)


def test_json_encoding_rules():
    from analytics_worker.jsonout import to_json
    assert to_json(3.0) == "3.0" and to_json(3) == "3" and to_json(np.int64(3)) == "3"
    assert to_json(np.float32(0.5)) == "0.5" and to_json(np.bool_(True)) == "true"
    assert to_json([float("nan"), float("inf"), -np.inf, 1.5]) == "[null,null,null,1.5]"
    assert to_json(np.array([[1.0, np.nan], [2.0, 3.0]])) == "[[1.0,null],[2.0,3.0]]"
    assert to_json({"a": np.arange(3), "b": None, "c": "x"}) == '{"a":[0,1,2],"b":null,"c":"x"}'
    assert json.loads(to_json({"k": (1, 2)})) == {"k": [1, 2]}


# ------------------------------------------------------------------ process title (built per request)

@pytest.mark.parametrize("algo, rid, expect", [
    ("kmeans", "abcdefghijkl", "analytics-worker[5] busy kmeans req=abcdefgh"),
    ("kmeans", "ab", "analytics-worker[5] busy kmeans req=ab"),
    ("", "", "analytics-worker[5] busy  req="),
    ("bad\nname\x1b[31m", "id\t\x00\u200bxyz", "analytics-worker[5] busy bad?name?[31m req=id???xyz"),
    ("x" * 500, "y" * 500, "analytics-worker[5] busy " + "x" * 40 + " req=" + "y" * 8),
    ("k\u00e9m\u00f6ans", "r\u00e9q-\u4e00", "analytics-worker[5] busy k\u00e9m\u00f6ans req=r\u00e9q-\u4e00"),
])
def test_busy_title_is_printable_and_short(algo, rid, expect):
    t = server.Title(5)
    for _ in range(2):  # the second call comes from the per-algorithm cache: same text
        title = t.busy_title(algo, rid)
        assert title == expect
        assert title.isprintable()
        longest = len("analytics-worker[5] busy ") + server.Title.ALGO_CHARS + len(" req=") + server.Title.ID_CHARS
        assert len(title) <= longest



def test_busy_title_cache_is_bounded_and_still_right_when_full():
    t = server.Title(2)
    for i in range(server.Title._MAX_CACHED + 50):
        assert t.busy_title("algo-%d" % i, "r%d" % i) == "analytics-worker[2] busy algo-%d req=r%d" % (i, i)
    assert len(t._busy_prefix) == server.Title._MAX_CACHED


def test_idle_and_busy_reach_setproctitle():
    t = server.Title(9)
    seen = []
    t._set = seen.append
    t.busy("kmeans", "0123456789")
    t.idle()
    assert seen == ["analytics-worker[9] busy kmeans req=01234567", "analytics-worker[9] idle"]
