"""Measure the worker: start-up to hello, idle RSS, round-trip times (README "Performance").

Usage (from py-worker/):  .venv/bin/python tools/measure.py [--runs N]
Plays the engine exactly like the tests do: listens on a temp Unix socket, spawns
`python -m analytics_worker`, times frames over the socket.
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

import numpy as np  # noqa: E402

from harness import EngineSide  # noqa: E402

MB = 1024 * 1024
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """user + system CPU time of a process (load-independent, unlike wall-clock times)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def timed(fn, repeat):
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = fn()
        out.append(time.perf_counter() - t0)
        assert r.get("ok", True), r
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5, help="worker start-ups to time")
    args = ap.parse_args()

    starts, start_cpu = [], []
    for _ in range(args.runs):
        e = EngineSide()
        e.accept()
        starts.append(e.t_hello - e.t_spawn)
        start_cpu.append(cpu_seconds(e.proc.pid))
        e.send({"type": "shutdown"})
        e.wait_exit()
        e.close()

    e = EngineSide()
    e.accept()
    try:
        rss_hello = e.ping()["rss_bytes"]
        tiny = timed(lambda: e.request("mean", [1.0, 2.0, 3.0]), 300)
        ping = timed(lambda: e.ping(), 300)
        payload = np.random.default_rng(42).normal(size=MB).astype("<f8").tobytes()  # 8 MiB
        big = timed(lambda: e.request("_test_echo", payload), 10)
        t0 = time.perf_counter()
        c0 = cpu_seconds(e.proc.pid)
        e.request("kmeans", [1.0, 2.0, 10.0, 11.0], params={"k": "2"})
        first_sklearn = time.perf_counter() - t0
        first_sklearn_cpu = cpu_seconds(e.proc.pid) - c0
        rss_sklearn = e.ping()["rss_bytes"]
        t0 = time.perf_counter()
        e.request("arima", [float(i % 7) for i in range(50)])
        first_statsmodels = time.perf_counter() - t0
        rss_all = e.ping()["rss_bytes"]
        kmeans = timed(lambda: e.request("kmeans", [1.0, 2.0, 10.0, 11.0], params={"k": "2"}), 20)
    finally:
        e.send({"type": "shutdown"})
        e.wait_exit()
        e.close()

    pre_starts, pre_cpu, pre_rss, pre_first = [], [], 0, 0.0
    for _ in range(max(1, args.runs // 2)):
        e = EngineSide(extra_args=["--preload"])
        e.accept()
        pre_starts.append(e.t_hello - e.t_spawn)
        pre_cpu.append(cpu_seconds(e.proc.pid))
        pre_rss = e.ping()["rss_bytes"]
        t0 = time.perf_counter()
        e.request("kmeans", [1.0, 2.0, 10.0, 11.0], params={"k": "2"})
        pre_first = time.perf_counter() - t0
        e.send({"type": "shutdown"})
        e.wait_exit()
        e.close()

    ms = lambda xs: "median %.2f ms (min %.2f, max %.2f)" % (  # noqa: E731
        statistics.median(xs) * 1e3, min(xs) * 1e3, max(xs) * 1e3)
    print("python: %s, load average %.1f" % (sys.version.split()[0], os.getloadavg()[0]))
    print("start-up to hello (%d runs):           %s" % (len(starts), ms(starts)))
    print("  worker CPU time until hello:        %s" % ms(start_cpu))
    print("idle RSS after hello:                 %.1f MiB" % (rss_hello / MB))
    print("tiny request round trip (mean, n=3):  %s" % ms(tiny))
    print("ping round trip:                      %s" % ms(ping))
    print("8 MiB float64 _test_echo round trip:  %s  (%.0f MiB/s)"
          % (ms(big), 8 / statistics.median(big)))
    print("first kmeans (imports sklearn):       %.0f ms (worker CPU %.0f ms)"
          % (first_sklearn * 1e3, first_sklearn_cpu * 1e3))
    print("RSS after first sklearn request:      %.1f MiB" % (rss_sklearn / MB))
    print("first arima (imports statsmodels):    %.0f ms" % (first_statsmodels * 1e3))
    print("RSS after sklearn + statsmodels:      %.1f MiB" % (rss_all / MB))
    print("warm kmeans k=2, n=4 round trip:      %s" % ms(kmeans))
    print("--preload: start-up to hello:         %s" % ms(pre_starts))
    print("--preload: worker CPU until hello:    %s" % ms(pre_cpu))
    print("--preload: idle RSS after hello:      %.1f MiB" % (pre_rss / MB))
    print("--preload: first kmeans round trip:   %.0f ms" % (pre_first * 1e3))


if __name__ == "__main__":
    main()
