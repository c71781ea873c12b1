"""Revision 3 of the protocol: progress frames while computing, and cancel frames that stop a computation.

A real worker process behind the test harness (tests/harness.py); no sleeps: every step waits for a frame.
"""

import json
import os
import time

import numpy as np
import pytest

from harness import EngineSide, f64


@pytest.fixture
def worker():
    e = EngineSide(worker_id=3)
    e.accept()
    yield e
    e.close()


def _forest_request(e, req_id, progress, n_estimators=60, n=3000):
    rng = np.random.default_rng(7)
    X = rng.normal(size=(n, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0]) + rng.normal(scale=0.1, size=n)
    msg = {"type": "request", "id": req_id, "algorithm": "random_forest",
           "params": {"n_estimators": str(n_estimators), "random_state": "42"},
           "data": f64(X.ravel()), "shape": [n, 4], "target": f64(y), "timeout_ms": 600000}
    if progress:
        msg["progress"] = True
    e.send(msg)


def _collect(e, req_id):
    """Frames up to and including the response to req_id: (progress frames, response)."""
    frames = []
    while True:
        m = e.recv()
        assert m["id"] == req_id, m
        if m["type"] == "response":
            return frames, m
        assert m["type"] == "progress", m
        frames.append(m)


def test_hello_offers_cancel_and_progress(worker):
    assert {"cancel", "progress"} <= set(worker.hello["features"])


def test_forest_progress_frames_in_order_and_result_identical(worker):
    _forest_request(worker, "plain", progress=False)
    none, plain = _collect(worker, "plain")
    assert none == [] and plain["ok"], plain
    _forest_request(worker, "watched", progress=True)
    frames, watched = _collect(worker, "watched")
    assert watched["ok"], watched
    assert watched["result_json"] == plain["result_json"]  # bit-identical, not just close
    fractions = [f["fraction"] for f in frames]
    assert fractions and fractions == sorted(fractions) and fractions[-1] == 1.0
    assert frames[-1]["detail"] == "60 of 60 trees"
    assert json.loads(plain["result_json"])["n_estimators"] == 60


def test_progress_rate_is_bounded(worker):
    # 200 trees on a small input: increments take milliseconds, frames must still be >= 0.1 s apart
    _forest_request(worker, "fast", progress=True, n_estimators=200, n=200)
    t0 = time.monotonic()
    frames, resp = _collect(worker, "fast")
    elapsed = time.monotonic() - t0
    assert resp["ok"]
    assert frames[-1]["fraction"] == 1.0
    assert len(frames) <= 2 + int(elapsed / 0.1)


def test_cancel_stops_a_running_forest_and_the_worker_stays(worker):
    _forest_request(worker, "long", progress=True, n_estimators=2000, n=4000)
    first = worker.recv()
    assert first["type"] == "progress" and first["fraction"] < 1.0  # it is computing now
    worker.send({"type": "cancel", "id": "long"})
    while True:
        m = worker.recv()
        if m["type"] == "response":
            break
        assert m["type"] == "progress"
    assert m["id"] == "long" and m["ok"] is False and m["error_code"] == "CANCELLED", m
    assert "cancelled" in m["error_message"]
    assert worker.proc.poll() is None
    assert worker.ping("after")["type"] == "pong"
    r = worker.request("mean", [1, 2, 3], req_id="next")
    assert r["ok"] and r["result_json"] == "2.0"


@pytest.mark.parametrize("algorithm,params", [("_test_hang", {}), ("_test_sleep", {"seconds": "600"})])
def test_cancel_interrupts_python_loops_and_sleeps(worker, algorithm, params):
    worker.send({"type": "request", "id": "x", "algorithm": algorithm, "params": params, "timeout_ms": 600000})
    worker.send({"type": "cancel", "id": "x"})
    m = worker.recv()
    assert m["type"] == "response" and m["error_code"] == "CANCELLED", m
    assert worker.ping()["type"] == "pong"


def test_cancel_of_a_long_kmeans(worker):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30000, 2))
    worker.send({"type": "request", "id": "km", "algorithm": "kmeans",
                 "params": {"k": "8", "n_init": "50", "max_iter": "1000"},
                 "data": f64(X.ravel()), "shape": [30000, 2], "timeout_ms": 600000})
    worker.send({"type": "cancel", "id": "km"})
    m = worker.recv()
    assert m["error_code"] == "CANCELLED", m
    r = worker.request("kmeans", [1, 1.1, 0.9, 10, 10.2, 9.8], params={"k": "2"}, req_id="small")
    assert r["ok"], r


def test_stale_and_foreign_cancels_are_ignored(worker):
    worker.send({"type": "cancel", "id": "long-gone"})  # crossed its response: nothing to stop
    assert worker.ping("p")["type"] == "pong"
    worker.send({"type": "request", "id": "mine", "algorithm": "_test_sleep", "params": {"seconds": "0.2"},
                 "timeout_ms": 10000})
    worker.send({"type": "cancel", "id": "not-mine"})
    m = worker.recv()
    assert m["ok"] and m["id"] == "mine", m
    assert worker.ping("q")["type"] == "pong"


def test_progress_field_must_be_boolean(worker):
    r = worker.request("mean", [1, 2], progress="yes")
    assert r["error_code"] == "INVALID_ARGUMENT" and "progress" in r["error_message"]


def test_arima_reports_optimizer_iterations_and_the_same_result(worker):
    rng = np.random.default_rng(5)
    y = np.cumsum(rng.normal(size=400))
    base = {"type": "request", "algorithm": "arima", "params": {"order": "2,1,2", "periods": "5"},
            "data": f64(y), "timeout_ms": 600000}
    worker.send(dict(base, id="a-plain"))
    none, plain = _collect(worker, "a-plain")
    worker.send(dict(base, id="a-watched", progress=True))
    frames, watched = _collect(worker, "a-watched")
    assert plain["ok"] and watched["ok"], (plain, watched)
    assert watched["result_json"] == plain["result_json"]
    assert none == [] and frames, frames
    assert frames[0]["detail"].startswith("optimizer iteration 1 ")
    fractions = [f["fraction"] for f in frames]
    assert fractions == sorted(fractions) and fractions[-1] < 1.0


def test_a_cancel_waits_while_a_module_is_imported(monkeypatch):
    """An import cut in half could break the worker for later requests: the cancel waits for its end."""
    import signal
    import socket

    from analytics_worker import server
    from analytics_worker.core import Cancelled

    a, b = socket.socketpair()
    try:
        w = server.Worker(a, 9, 1 << 20, False, server.Log(9))
        signal.signal(signal.SIGALRM, lambda *_: None)  # the recheck timer set below must not end pytest
        w.computing = "r1"
        w.cancel_seen = True
        monkeypatch.setattr(server, "_importing", lambda: True)
        w._raise_if_cancelled()  # deferred: no exception, a recheck is scheduled
        assert signal.getitimer(signal.ITIMER_REAL)[0] > 0
        signal.setitimer(signal.ITIMER_REAL, 0)
        monkeypatch.setattr(server, "_importing", lambda: False)
        with pytest.raises(Cancelled):
            w._raise_if_cancelled()
        assert w.cancel_seen is False
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        a.close()
        b.close()


def test_importing_detects_an_import_in_progress(tmp_path, monkeypatch):
    from analytics_worker import server
    (tmp_path / "aw_probe_module.py").write_text(
        "from analytics_worker import server\nDURING = server._importing()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import aw_probe_module
    assert aw_probe_module.DURING is True
    assert server._importing() is False
