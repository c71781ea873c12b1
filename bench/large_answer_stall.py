"""Does a large Python answer stall the network thread? (bench/README.md, "The small-request toll")

    bench/.venv/bin/python bench/large_answer_stall.py JAR [POINTS]

Starts the engine JAR (2 workers, test mode) and measures native `mean` c=1 with ghz (p50, p99, slowest), first
quiet, then while one client loops `seasonal_decompose` over POINTS (default 200 000: ~16 MB of result JSON)
through a worker. Run it for two jars one after the other (alternating) and compare. Needs scripts/bench.sh's
tools (bench/.venv, .tools/bin/ghz).
"""
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness as H  # noqa: E402

ROOT = os.path.dirname(HERE)


def ghz(addr, secs):
    out = subprocess.run([os.path.join(ROOT, ".tools/bin/ghz"), "--insecure", "--proto", "proto/analytics.proto",
                          "--call", "analytics.AnalyticsEngine.Analyze",
                          "-d", '{"request_id":"m","algorithm":"mean","data":[1,2,3,4,5,6,7,8,9,10]}',
                          "-c", "1", "--connections", "1", "-z", "%ds" % secs, "-O", "json", addr],
                         capture_output=True, text=True, cwd=ROOT, check=True)
    d = json.loads(out.stdout)
    lat = {p["percentage"]: p["latency"] / 1000 for p in d["latencyDistribution"]}
    return lat[50], lat[99], d["slowest"] / 1000


def main():
    jar = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
    eng = H.Engine(2, tag="stall", jar=jar)
    try:
        eng.wait_ready()
        call = H.analyze_raw(H.channel(eng.addr))
        x = (np.sin(np.arange(n) * 2 * np.pi / 24) + np.random.default_rng(1).normal(0, 0.1, n)).tolist()
        req = H.pb.AnalysisRequest(request_id="big", algorithm="seasonal_decompose", data=x,
                                   params={"period": "24"},
                                   options=H.pb.AnalysisOptions(allow_python=True, timeout_ms=60000)).SerializeToString()
        r = call(req, timeout=120)
        assert r.success, r.error_message
        print("large answer: %d chars of result JSON" % len(r.result_json))
        stop = threading.Event()
        took = []

        def loop():
            while not stop.is_set():
                t = time.perf_counter()
                call(req, timeout=120)
                took.append(time.perf_counter() - t)

        ghz(eng.addr, 5)  # warm-up
        quiet = ghz(eng.addr, 8)
        th = threading.Thread(target=loop)
        th.start()
        busy = ghz(eng.addr, 10)
        stop.set()
        th.join()
        print("native mean c=1, quiet: p50 %.0f us, p99 %.0f us, slowest %.0f us" % quiet)
        print("native mean c=1, with large answers: p50 %.0f us, p99 %.0f us, slowest %.0f us "
              "(%d large requests, median %.0f ms)" % (busy + (len(took), 1000 * sorted(took)[len(took) // 2])))
    finally:
        eng.stop()


if __name__ == "__main__":
    main()
