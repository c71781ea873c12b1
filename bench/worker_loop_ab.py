"""The Python worker's request loop alone, two versions side by side (bench/README.md, "The small-request toll").

    py-worker/.venv/bin/python bench/worker_loop_ab.py OLD_PY_WORKER_DIR [NEW_PY_WORKER_DIR] [--requests N] [--rounds R]

Starts one worker of each version (python -m analytics_worker, found through PYTHONPATH=DIR) behind a minimal
engine side on a Unix socket (py-worker/tests/harness.py), sends `_test_echo` over 100 points at c=1, and reports
per round and version the round trip p50 (engine side: send -> answer) and the worker's CPU per request
(/proc/PID/stat). Rounds alternate which version goes first; compare the per-round ratios. OLD_PY_WORKER_DIR is
e.g. `git archive <commit> py-worker/analytics_worker | tar -x -C /tmp/old` -> /tmp/old/py-worker.
"""

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "py-worker", "tests"))
import harness  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def start(pkg_dir):
    e = harness.EngineSide(env={"PYTHONPATH": os.path.abspath(pkg_dir)})
    e.accept()
    return e


def measure(e, n):
    data = harness.f64([float(i) for i in range(100)])
    msg = {"type": "request", "algorithm": "_test_echo", "params": {}, "data": data, "shape": [100, 1],
           "timeout_ms": 30000}
    lat = []
    c0 = cpu_ticks(e.proc.pid)
    for i in range(n):
        msg["id"] = "r%d" % i
        t = time.perf_counter_ns()
        e.send(msg)
        r = e.recv()
        lat.append(time.perf_counter_ns() - t)
        assert r.get("ok"), r
    cpu = (cpu_ticks(e.proc.pid) - c0) * 1e6 / CLK / n
    return statistics.median(lat) / 1000, cpu


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("old")
    ap.add_argument("new", nargs="?", default=os.path.join(HERE, "..", "py-worker"))
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args(argv)
    sides = {"old": start(a.old), "new": start(a.new)}
    try:
        for e in sides.values():
            measure(e, 500)  # warm-up
        ratios = []
        for rnd in range(a.rounds):
            order = ["old", "new"] if rnd % 2 == 0 else ["new", "old"]
            res = {k: measure(sides[k], a.requests) for k in order}
            ratio = res["new"][0] / res["old"][0]
            ratios.append(ratio)
            print("round %d: old p50 %.1f us, worker CPU %.1f us/req | new p50 %.1f us, worker CPU %.1f us/req | "
                  "p50 new/old %.3f" % (rnd + 1, res["old"][0], res["old"][1], res["new"][0], res["new"][1], ratio))
        print("median p50 ratio new/old: %.3f" % statistics.median(ratios))
    finally:
        for e in sides.values():
            e.send({"type": "shutdown"})
            e.wait_exit()


if __name__ == "__main__":
    main()
