"""Protocol round trips over a real Unix socket against a real worker subprocess."""

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

import msgpack
import numpy as np
import pytest

from harness import PKG_DIR, TOKEN, EngineSide, f64, pack


def _cmdline(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return f.read().replace(b"\x00", b" ").decode().strip()


def _title_poll(pid, expect, deadline_s=5.0):
    deadline = time.monotonic() + deadline_s
    seen = ""
    while time.monotonic() < deadline:
        seen = _cmdline(pid)
        if seen.startswith(expect):
            return seen
        time.sleep(0.005)
    return seen


# ------------------------------------------------------------------ hello

def test_hello_fields(shared_engine):
    h = shared_engine.hello
    assert h["type"] == "hello"
    assert h["protocol"] == 1
    assert h["token"] == TOKEN
    assert h["worker_id"] == 7
    assert h["pid"] == shared_engine.proc.pid
    for lib in ("python", "numpy", "scipy", "sklearn", "statsmodels", "msgpack", "worker"):
        assert isinstance(h["versions"][lib], str) and h["versions"][lib] not in ("", "unknown"), lib
    algos = h["algorithms"]
    for name in ("mean", "summary", "_test_echo", "_test_sleep", "_test_crash"):
        assert name in algos
    for name, spec in algos.items():
        assert set(spec) == {"description", "required", "optional", "input", "category", "min_points",
                             "test_only", "params"}, name
        assert [q["name"] for q in spec["params"]] == spec["required"] + list(spec["optional"]), name
        assert spec["input"] in ("series", "matrix", "text")
        assert all(isinstance(v, str) for v in spec["optional"].values())
        assert isinstance(spec["required"], list)
    assert algos["percentile"]["optional"]["percentile"] == "50"


def test_test_algorithms_absent_without_flag():
    e = EngineSide(test_algorithms=False)
    try:
        h = e.accept()
        assert not any(n.startswith("_test") for n in h["algorithms"])
        assert "mean" in h["algorithms"]
        r = e.request("_test_echo", [1.0])
        assert r["ok"] is False and r["error_code"] == "UNKNOWN_ALGORITHM"
        assert "_test_echo" in r["error_message"]
    finally:
        e.close()


def test_max_frame_below_minimum_is_a_usage_error():
    env = dict(os.environ, PYTHONPATH=PKG_DIR, ANALYTICS_WORKER_TOKEN=TOKEN)
    p = subprocess.run([sys.executable, "-m", "analytics_worker", "--socket", "/nonexistent.sock",
                        "--worker-id", "1", "--max-frame", "1000"], env=env, capture_output=True, timeout=30)
    assert p.returncode == 2 and b"--max-frame must be at least 65536" in p.stderr


def test_missing_token_exits_with_usage_error():
    env = {k: v for k, v in os.environ.items() if k != "ANALYTICS_WORKER_TOKEN"}
    env["PYTHONPATH"] = PKG_DIR
    p = subprocess.run([sys.executable, "-m", "analytics_worker", "--socket", "/nonexistent.sock",
                        "--worker-id", "1"], env=env, capture_output=True, timeout=30)
    assert p.returncode == 64
    assert b"ANALYTICS_WORKER_TOKEN" in p.stderr


def test_connect_failure_exits_nonzero(tmp_path):
    env = dict(os.environ, PYTHONPATH=PKG_DIR, ANALYTICS_WORKER_TOKEN=TOKEN)
    p = subprocess.run([sys.executable, "-m", "analytics_worker", "--socket", str(tmp_path / "none.sock"),
                        "--worker-id", "1"], env=env, capture_output=True, timeout=30)
    assert p.returncode == 3
    assert b"cannot connect" in p.stderr


# ------------------------------------------------------------------ request / response

def test_request_response_scalar(shared_engine):
    r = shared_engine.request("mean", [1.0, 2.0, 3.0, 4.0], req_id="abc")
    assert r["type"] == "response" and r["id"] == "abc" and r["ok"] is True
    assert r["result_json"] == "2.5"
    assert set(r["timings"]) == {"decode_us", "compute_us", "encode_us"}
    assert all(isinstance(v, int) and v >= 0 for v in r["timings"].values())
    assert "error_code" not in r


def test_count_is_integer_json(shared_engine):
    r = shared_engine.request("count", [5.0, 6.0, 7.0])
    assert r["result_json"] == "3"


def test_matrix_echo_and_shape(shared_engine):
    data = np.arange(12, dtype=float)
    r = shared_engine.request("_test_echo", data, shape=[4, 3])
    assert r["ok"], r
    assert json.loads(r["result_json"]) == {"n": 12, "sum": 66.0, "shape": [4, 3]}


def test_big_endian_data_is_not_accepted_silently(shared_engine):
    # the data field is little-endian by contract: bytes are interpreted as '<f8'
    raw = np.array([1.5, 2.5], dtype=">f8").tobytes()
    r = shared_engine.request("_test_echo", raw)
    assert r["ok"]
    assert json.loads(r["result_json"])["sum"] == float(np.frombuffer(raw, dtype="<f8").sum())


def test_error_response_has_no_traceback_and_worker_survives(shared_engine):
    r = shared_engine.request("std", [1.0], req_id="e1")
    assert r["ok"] is False and r["id"] == "e1"
    assert r["error_code"] == "INVALID_ARGUMENT"
    assert r["error_message"] == "std needs at least 2 data points, got 1"
    assert "Traceback" not in r["error_message"]
    assert "result_json" not in r
    assert shared_engine.request("max", [1.0, 9.0])["result_json"] == "9.0"


def test_unknown_algorithm(shared_engine):
    r = shared_engine.request("no_such_algo", [1.0])
    assert r["ok"] is False and r["error_code"] == "UNKNOWN_ALGORITHM"
    assert "no_such_algo" in r["error_message"]


@pytest.mark.parametrize("field,value,needle", [
    ("params", {"percentile": 5}, "params"),
    ("params", [1, 2], "params"),
    ("data", "not-bytes", "data"),
    ("data", b"\x00" * 7, "multiple of 8"),
    ("shape", [2, "x"], "shape"),
    ("shape", [1, 2, 3], "shape"),
    ("shape", [-1], "shape"),
    ("shape", [3], "needs 3 values but data has 2"),
    ("target", b"\x00" * 8, "target has 1 values but data has 2 rows"),
    ("texts", ["ok", 3], "texts"),
    ("timeout_ms", "soon", "timeout_ms"),
    ("algorithm", 12, "algorithm"),
])
def test_wrong_field_types_get_invalid_argument(shared_engine, field, value, needle):
    msg = {"type": "request", "id": "w1", "algorithm": "mean", "params": {}, "data": f64([1.0, 2.0]),
           "timeout_ms": 1000}
    msg[field] = value
    shared_engine.send(msg)
    r = shared_engine.recv()
    assert r["id"] == "w1" and r["ok"] is False
    assert r["error_code"] == "INVALID_ARGUMENT", r
    assert needle in r["error_message"]
    # still alive and serving
    assert shared_engine.ping("after-" + field)["type"] == "pong"


def test_nan_in_data_rejected_and_omit(shared_engine):
    r = shared_engine.request("mean", [1.0, float("nan"), 3.0])
    assert r["error_code"] == "INVALID_ARGUMENT"
    assert "non-finite" in r["error_message"] and "nan_policy=omit" in r["error_message"]
    r = shared_engine.request("mean", [1.0, float("inf"), 3.0], params={"nan_policy": "omit"})
    assert r["ok"] and r["result_json"] == "2.0"


# ------------------------------------------------------------------ ping / pong

def test_ping_pong(shared_engine):
    before = shared_engine.ping("p-a")
    shared_engine.request("mean", [1.0])
    after = shared_engine.ping("p-b")
    assert before["type"] == "pong" and before["id"] == "p-a"
    assert after["id"] == "p-b"
    assert after["requests"] == before["requests"] + 1
    assert 10 * 1024 * 1024 < after["rss_bytes"] < 2 * 1024 ** 3
    with open("/proc/%d/statm" % shared_engine.proc.pid) as f:
        pages = int(f.read().split()[1])
    assert abs(after["rss_bytes"] - pages * os.sysconf("SC_PAGE_SIZE")) < 64 * 1024 * 1024


# ------------------------------------------------------------------ process title

def test_process_title_idle_and_busy(engine):
    pid = engine.proc.pid
    assert _title_poll(pid, "analytics-worker[1] idle").startswith("analytics-worker[1] idle")
    engine.send({"type": "request", "id": "abcdefghijkl", "algorithm": "_test_sleep",
                 "params": {"seconds": "1.5"}, "data": b"", "timeout_ms": 5000})
    busy = _title_poll(pid, "analytics-worker[1] busy")
    assert busy.startswith("analytics-worker[1] busy _test_sleep req=abcdefgh"), busy
    r = engine.recv()
    assert r["ok"] and json.loads(r["result_json"]) == {"slept": 1.5}
    assert _title_poll(pid, "analytics-worker[1] idle").startswith("analytics-worker[1] idle")


# ------------------------------------------------------------------ shutdown / EOF / death

def test_shutdown_exits_zero(engine):
    engine.send({"type": "shutdown"})
    assert engine.wait_exit() == 0
    assert engine.at_eof()


def test_eof_makes_worker_exit(engine):
    engine.conn.close()
    engine.conn = None
    assert engine.wait_exit() == 0


def test_crash_algorithm_exits_with_code(engine):
    engine.send({"type": "request", "id": "c1", "algorithm": "_test_crash", "params": {"code": "7"},
                 "data": b"", "timeout_ms": 1000})
    assert engine.wait_exit() == 7
    assert engine.at_eof()


def test_sigterm_lets_the_request_finish_and_waits_for_shutdown(engine):
    # clean stop: the unit's SIGTERM must not cut a request short; the engine's "shutdown" ends the worker
    engine.send({"type": "request", "id": "t1", "algorithm": "_test_sleep", "params": {"seconds": "0.5"},
                 "data": b"", "timeout_ms": 10000})
    assert _title_poll(engine.proc.pid, "analytics-worker[1] busy _test_sleep").startswith(
        "analytics-worker[1] busy _test_sleep")
    engine.proc.send_signal(signal.SIGTERM)
    r = engine.recv()
    assert r["id"] == "t1" and r["ok"] is True
    assert engine.ping("after-term")["type"] == "pong"
    engine.send({"type": "shutdown"})
    assert engine.wait_exit() == 0
    assert "SIGTERM received: finishing the current request" in engine.stderr_text()


def test_sigkill_ends_a_hung_worker(engine):
    engine.send({"type": "request", "id": "h1", "algorithm": "_test_hang", "params": {}, "data": b"",
                 "timeout_ms": 100})
    assert _title_poll(engine.proc.pid, "analytics-worker[1] busy _test_hang").startswith(
        "analytics-worker[1] busy _test_hang")
    engine.proc.send_signal(signal.SIGKILL)
    assert engine.wait_exit() == -signal.SIGKILL


def test_parent_death_signal_is_set(engine):
    # /proc/PID/status has no PDEATHSIG field; check through a grandchild setup instead: spawn a
    # worker from an intermediate process that we kill with SIGKILL, and see the worker go away.
    code = (
        "import os, subprocess, sys\n"
        "p = subprocess.Popen([sys.executable, '-m', 'analytics_worker', '--socket', sys.argv[1],"
        " '--worker-id', '9'])\n"
        "print(p.pid, flush=True)\n"
        "import time\n"
        "while True: time.sleep(60)\n"
    )
    env = dict(os.environ, PYTHONPATH=PKG_DIR, ANALYTICS_WORKER_TOKEN=TOKEN)
    tmp = tempfile.TemporaryDirectory(prefix="aw-pd-")
    path = os.path.join(tmp.name, "w.sock")
    lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lst.bind(path)
    lst.listen(1)
    lst.settimeout(30)
    middle = subprocess.Popen([sys.executable, "-c", code, path], env=env, stdout=subprocess.PIPE)
    try:
        worker_pid = int(middle.stdout.readline())
        conn, _ = lst.accept()
        conn.settimeout(30)
        hdr = conn.recv(4)
        assert len(hdr) == 4  # hello arrived: prctl ran before connect
        middle.kill()
        middle.wait(10)
        # the connection is still open (we hold it), so only the parent-death signal can end it
        deadline = time.monotonic() + 10
        gone = False
        while time.monotonic() < deadline:
            try:
                os.kill(worker_pid, 0)
                with open("/proc/%d/stat" % worker_pid) as f:
                    if f.read().split(") ")[1].startswith("Z"):
                        gone = True
                        break
            except (ProcessLookupError, FileNotFoundError):
                gone = True
                break
            time.sleep(0.01)
        assert gone, "worker survived the death of its parent"
        conn.close()
    finally:
        if middle.poll() is None:
            middle.kill()
            middle.wait(10)
        middle.stdout.close()
        lst.close()
        tmp.cleanup()


# ------------------------------------------------------------------ protocol errors: log and close

def _expect_protocol_close(engine, raw, log_needle):
    engine.send_raw(raw)
    assert engine.at_eof()
    assert engine.wait_exit() == 2
    err = engine.stderr_text()
    assert "protocol error" in err and log_needle in err, err


def test_zero_length_frame(engine):
    _expect_protocol_close(engine, b"\x00\x00\x00\x00", "frame length 0")


def test_oversize_length():
    e = EngineSide(extra_args=["--max-frame", "65536"])
    try:
        e.accept()
        # within the limit is fine
        r = e.request("_test_echo", np.zeros(8000))
        assert r["ok"]
        _expect_protocol_close(e, struct.pack(">I", 65537) + b"\x80", "exceeds the maximum 65536")
    finally:
        e.close()


def test_truncated_frame(engine):
    body = msgpack.packb({"type": "ping", "id": "x"})
    engine.send_raw(struct.pack(">I", len(body) + 10) + body)
    engine.conn.shutdown(1)  # SHUT_WR: the worker sees EOF mid-body
    assert engine.wait_exit() == 2
    assert "truncated frame" in engine.stderr_text()


def test_garbage_bytes(engine):
    _expect_protocol_close(engine, struct.pack(">I", 5) + b"\xc1\xc1\xc1\xc1\xc1", "not valid msgpack")


def test_trailing_bytes_after_map(engine):
    body = msgpack.packb({"type": "ping", "id": "x"}) + b"\x01"
    _expect_protocol_close(engine, struct.pack(">I", len(body)) + body, "not valid msgpack")


def test_non_map_body(engine):
    body = msgpack.packb([1, 2, 3])
    _expect_protocol_close(engine, struct.pack(">I", len(body)) + body, "not a map")


def test_unknown_type(engine):
    _expect_protocol_close(engine, pack({"type": "launch_missiles", "id": "1"}), "unknown type")


def test_missing_type(engine):
    _expect_protocol_close(engine, pack({"id": "1"}), "unknown type")


def test_request_without_id(engine):
    _expect_protocol_close(engine, pack({"type": "request", "algorithm": "mean", "data": b""}),
                           "without a string 'id'")


def test_log_never_contains_frame_body(engine):
    secret = "S3CRET-PAYLOAD"
    body = msgpack.packb({"type": "evil", "payload": secret})
    engine.send_raw(struct.pack(">I", len(body)) + body)
    assert engine.wait_exit() == 2
    assert secret not in engine.stderr_text()


def test_garbage_algorithm_writes_malformed_frame(engine):
    engine.send({"type": "request", "id": "g1", "algorithm": "_test_garbage", "params": {}, "data": b"",
                 "timeout_ms": 1000})
    raw = engine.recv_raw()
    with pytest.raises(Exception):
        msgpack.unpackb(raw, raw=False)


def test_internal_error_logs_traceback_not_to_client(engine):
    # _test_sleep with a non-numeric param is a clean INVALID_ARGUMENT, not a traceback
    r = engine.request("_test_sleep", params={"seconds": "abc"})
    assert r["error_code"] == "INVALID_ARGUMENT"
    assert r["error_message"] == "param 'seconds' must be a number between 0 and 86400, got 'abc'"


def test_8mb_payload_round_trip(shared_engine):
    n = 1024 * 1024  # 8 MiB of float64
    data = np.arange(n, dtype="<f8")
    t0 = time.perf_counter()
    r = shared_engine.request("_test_echo", data.tobytes(), shape=[n // 4, 4])
    dt = time.perf_counter() - t0
    assert r["ok"]
    assert json.loads(r["result_json"]) == {"n": n, "sum": float(data.sum()), "shape": [n // 4, 4]}
    assert dt < 5.0


# ------------------------------------------------------------------ every algorithm over the socket

SOCKET_CASES = [
    # (algorithm, request kwargs, expected ok, expected error substring)
    ("kmeans", {"data": [1, 2, 3, 10, 11], "params": {"k": "2"}}, True, None),
    ("kmeans", {"data": [1, 2, 3, 4, 5], "params": {"k": "10"}}, False, "k=10 exceeds the number of points (5)"),
    ("kmeans", {"data": [1, 2, 3], "params": {"k": "abc"}}, False, "param 'k' must be an integer >= 1, got 'abc'"),
    ("dbscan", {"data": [1, 1.1, 1.2, 9], "params": {"min_samples": "2"}}, True, None),
    ("pca", {"data": list(range(12)), "shape": [4, 3]}, True, None),
    ("pca", {"data": list(range(12)), "shape": [5, 3]}, False, "shape [5, 3] needs 15 values but data has 12"),
    ("linear_regression", {"data": [1, 2, 3, 4], "shape": [2, 2], "target": [1, 2]}, True, None),
    ("random_forest", {"data": [1, 2, 3, 5, 4, 6], "params": {"n_estimators": "5"}}, True, None),
    ("arima", {"data": [float(i % 7) + i * 0.1 for i in range(40)], "params": {"periods": "3"}}, True, None),
    ("seasonal_decompose", {"data": [float(i % 4) for i in range(16)], "params": {"period": "4"}}, True, None),
    ("trend_analysis", {"data": [1, 2, 3, 4, 5, 6]}, True, None),
    ("anomaly_detection", {"data": [1, 1, 1, 1, 1, 1, 1, 1, 50], "params": {"method": "mad"}}, True, None),
    ("sentiment_analysis", {"texts": ["what a lovely day"]}, True, None),
    ("sentiment_analysis", {"texts": []}, False, "sentiment_analysis needs 1 text"),
    ("text_similarity", {"params": {"text1": "a cat sat", "text2": "a cat ran"}}, True, None),
    ("keyword_extraction", {"params": {"text": "workers serve requests; workers idle"}}, True, None),
    ("keyword_extraction", {"texts": [""]}, False, "keyword_extraction: texts[0] is empty"),
]


def test_every_algorithm_over_the_socket(shared_engine):
    served = shared_engine.hello["algorithms"]
    for i, (name, kwargs, ok, err) in enumerate(SOCKET_CASES):
        assert name in served
        r = shared_engine.request(name, req_id="sock-%d" % i, **kwargs)
        assert r["id"] == "sock-%d" % i
        assert r["ok"] is ok, (name, r)
        if ok:
            assert isinstance(json.loads(r["result_json"]), (dict, float, int))
        else:
            assert r["error_code"] == "INVALID_ARGUMENT" and err in r["error_message"], r
    assert shared_engine.ping("after-all")["type"] == "pong"
    assert {c[0] for c in SOCKET_CASES} == TWELVE


TWELVE = {"kmeans", "dbscan", "pca", "linear_regression", "random_forest", "arima", "seasonal_decompose",
          "trend_analysis", "anomaly_detection", "sentiment_analysis", "text_similarity", "keyword_extraction"}
STATS = {"mean", "median", "std", "variance", "min", "max", "range", "percentile", "q1", "q3", "iqr", "mode",
         "skewness", "kurtosis", "count", "correlation", "summary"}
TEST_ONLY = {"_test_sleep", "_test_hang", "_test_crash", "_test_alloc", "_test_garbage", "_test_echo",
             "_test_random"}


def test_hello_lists_exactly_the_algorithms(shared_engine):
    assert set(shared_engine.hello["algorithms"]) == TWELVE | STATS | TEST_ONLY


def test_preload_imports_heavy_libraries_before_hello():
    e = EngineSide(extra_args=["--preload"], test_algorithms=False)
    try:
        e.accept()
        rss = e.ping()["rss_bytes"]
        # scikit-learn + statsmodels (+ scipy, pandas) resident: far above a bare worker (~30 MiB)
        assert rss > 100 * 1024 * 1024, rss
        r = e.request("sentiment_analysis", texts=["good"])
        assert r["ok"]
    finally:
        e.close()


def _limit_address_space():
    import resource
    limit = 768 * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def test_out_of_memory_is_an_error_response_and_worker_survives():
    e = EngineSide(preexec_fn=_limit_address_space)
    try:
        e.accept()
        r = e.request("_test_alloc", req_id="oom")
        assert r["ok"] is False and r["error_code"] == "INVALID_ARGUMENT"
        assert r["error_message"].startswith("_test_alloc ran out of memory on this input")
        assert e.request("mean", [4.0, 6.0])["result_json"] == "5.0"
        assert e.ping()["rss_bytes"] < 256 * 1024 * 1024  # the allocation was released
    finally:
        e.close()
