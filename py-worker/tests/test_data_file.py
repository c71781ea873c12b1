"""The worker's side of the shared-memory hand-off (PROTOCOL.md, data_file / target_file)."""

import json
import os
import socket
import struct

import msgpack
import numpy as np
import pytest

from analytics_worker import server

server.load_algorithms()


def _recv(sock):
    (n,) = struct.unpack(">I", sock.recv(4))
    buf = b""
    while len(buf) < n:
        buf += sock.recv(n - len(buf))
    return msgpack.unpackb(buf, raw=False)


@pytest.fixture
def rt(tmp_path):
    d = tmp_path / "rt"
    d.mkdir(mode=0o700)
    return d


@pytest.fixture
def worker(rt):
    a, b = socket.socketpair()
    w = server.Worker(a, 7, 1 << 20, True, server.Log(7), data_dir=str(rt))
    yield w, b
    a.close()
    b.close()


def _write(rt, name, values):
    arr = np.asarray(values, dtype="<f8")
    (rt / name).write_bytes(arr.tobytes())
    return {"name": name, "nbytes": arr.nbytes}


def _ask(worker, **kw):
    w, b = worker
    msg = {"type": "request", "id": "d1", "algorithm": "_test_echo", "params": {}, "timeout_ms": 1000}
    msg.update(kw)
    w.handle_request(msg)
    return _recv(b)


def test_hello_advertises_data_file_only_with_a_runtime_dir(worker):
    w, _ = worker
    assert "data_file" in w.hello("t")["features"]
    a, b = socket.socketpair()
    try:
        assert "data_file" not in server.Worker(a, 1, 1 << 20, False, server.Log(1)).hello("t")["features"]
    finally:
        a.close()
        b.close()


def test_data_file_gives_the_same_result_as_msgpack_bytes(worker, rt):
    rng = np.random.default_rng(8)
    x = rng.normal(size=3000)
    via_file = _ask(worker, data_file=_write(rt, "data-1.f64", x), shape=[1000, 3])
    via_bytes = _ask(worker, data=x.astype("<f8").tobytes(), shape=[1000, 3])
    assert via_file["ok"], via_file
    assert json.loads(via_file["result_json"]) == json.loads(via_bytes["result_json"])
    assert json.loads(via_file["result_json"])["n"] == 3000


def test_target_file_and_real_algorithm(worker, rt):
    rng = np.random.default_rng(9)
    X = rng.normal(size=(400, 2))
    y = X @ np.array([2.0, -1.0]) + 0.5
    a = _ask(worker, algorithm="linear_regression", data_file=_write(rt, "d.f64", X.ravel()),
             target_file=_write(rt, "t.f64", y), shape=[400, 2])
    b = _ask(worker, algorithm="linear_regression", data=X.astype("<f8").tobytes(),
             target=y.astype("<f8").tobytes(), shape=[400, 2])
    assert a["ok"], a
    assert a["result_json"] == b["result_json"]


def test_mapping_is_released_after_the_request(worker, rt):
    ref = _write(rt, "rel.f64", [1.0, 2.0, 3.0])
    assert _ask(worker, data_file=ref)["ok"]
    # the worker holds no mapping of the file any more
    with open("/proc/self/maps") as f:
        assert str(rt / "rel.f64") not in f.read()


@pytest.mark.parametrize("name", ["../x.f64", "a/b.f64", "/etc/passwd", "..", "x..y", "", ".hidden",
                                  "a\x00b", "n" * 201, "workers sock"])
def test_bad_names_are_invalid_argument(worker, rt, name):
    r = _ask(worker, data_file={"name": name, "nbytes": 8})
    assert r["ok"] is False and r["error_code"] == "INVALID_ARGUMENT", r
    assert "invalid file name" in r["error_message"]


@pytest.mark.parametrize("ref, why", [
    ({"name": "x.f64"}, "exactly 'name' and 'nbytes'"),
    ({"name": "x.f64", "nbytes": 8, "path": "/tmp"}, "exactly 'name' and 'nbytes'"),
    ("x.f64", "exactly 'name' and 'nbytes'"),
    ({"name": "x.f64", "nbytes": 12}, "multiple of 8"),
    ({"name": "x.f64", "nbytes": -8}, "multiple of 8"),
    ({"name": "x.f64", "nbytes": "8"}, "multiple of 8"),
    ({"name": "x.f64", "nbytes": True}, "multiple of 8"),
])
def test_malformed_refs_are_invalid_argument(worker, rt, ref, why):
    _write(rt, "x.f64", [1.0, 2.0])
    r = _ask(worker, data_file=ref)
    assert r["ok"] is False and r["error_code"] == "INVALID_ARGUMENT", r
    assert why in r["error_message"]


def test_wrong_size_is_invalid_argument(worker, rt):
    _write(rt, "s.f64", [1.0, 2.0, 3.0])
    r = _ask(worker, data_file={"name": "s.f64", "nbytes": 16})
    assert r["error_code"] == "INVALID_ARGUMENT" and "has 24 bytes, nbytes says 16" in r["error_message"]
    r = _ask(worker, data_file={"name": "s.f64", "nbytes": 24}, shape=[4])
    assert r["error_code"] == "INVALID_ARGUMENT" and "needs 4 values" in r["error_message"]


def test_missing_file_is_invalid_argument(worker):
    r = _ask(worker, data_file={"name": "gone.f64", "nbytes": 8})
    assert r["error_code"] == "INVALID_ARGUMENT" and "not found" in r["error_message"]


def test_symlink_directory_and_fifo_are_refused(worker, rt, tmp_path):
    outside = tmp_path / "outside.f64"
    outside.write_bytes(np.ones(2).tobytes())
    os.symlink(outside, rt / "link.f64")
    os.mkdir(rt / "dir.f64")
    os.mkfifo(rt / "fifo.f64")
    for name in ("link.f64", "dir.f64", "fifo.f64"):
        r = _ask(worker, data_file={"name": name, "nbytes": 16})
        assert r["ok"] is False and r["error_code"] == "INVALID_ARGUMENT", (name, r)


def test_data_and_data_file_together_are_refused(worker, rt):
    ref = _write(rt, "both.f64", [1.0])
    r = _ask(worker, data_file=ref, data=np.ones(1).tobytes())
    assert r["error_code"] == "INVALID_ARGUMENT" and "mutually exclusive" in r["error_message"]


def test_wrong_target_file_length(worker, rt):
    r = _ask(worker, data_file=_write(rt, "d2.f64", [1.0, 2.0]), target_file=_write(rt, "t2.f64", [1.0]))
    assert r["error_code"] == "INVALID_ARGUMENT" and "target has 1 values" in r["error_message"]


def test_worker_without_runtime_dir_refuses_data_file(rt):
    a, b = socket.socketpair()
    try:
        w = server.Worker(a, 2, 1 << 20, True, server.Log(2))
        _write(rt, "n.f64", [1.0])
        w.handle_request({"type": "request", "id": "x", "algorithm": "_test_echo",
                          "data_file": {"name": "n.f64", "nbytes": 8}})
        r = _recv(b)
        assert r["error_code"] == "INVALID_ARGUMENT" and "not supported" in r["error_message"]
    finally:
        a.close()
        b.close()


def test_empty_file(worker, rt):
    (rt / "e.f64").write_bytes(b"")
    r = _ask(worker, data_file={"name": "e.f64", "nbytes": 0})
    assert r["ok"], r
    assert json.loads(r["result_json"])["n"] == 0
