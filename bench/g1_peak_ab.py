"""RSS peak of 16 concurrent 10^6-point summaries, burst by burst, for JVM-flag variants (bench/README.md, "JVM
flags, fifth pass"): each variant a fresh engine (W workers, default 0), a 3 s warm-up burst, then three 5 s
bursts with 3 s pauses (when PRE7=1, 4 s of sequential 10^7-point summaries and 3 s idle before each burst, as
the harness's scenario order has), RSS sampled every 50 ms; two rounds alternating the variants.

    [PRE7=1] [W=2] bench/.venv/bin/python bench/g1_peak_ab.py default region1m serial ...
"""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from flags_ab import alternate, with_flags  # noqa: E402

VARIANTS = {
    "default": [],
    "region1m": ["-XX:G1HeapRegionSize=1m"],  # what G1 picks for a 1 GiB heap
    "region2m": ["-XX:G1HeapRegionSize=2m"],
    "region4m": ["-XX:G1HeapRegionSize=4m"],
    "region16m": ["-XX:G1HeapRegionSize=16m"],  # an 8 MB array is no longer humongous: a bigger eden
    "xmx512": ["-Xmx512m"],
    "serial": ["-XX:+UseSerialGC"],
}


def run(name):
    os.environ["BENCH_JAVA_OPTS"] = " ".join(with_flags(VARIANTS[name]))
    eng = h.Engine(int(os.environ.get("W", "0")), test_mode=False)
    out = []
    try:
        eng.wait_ready()
        body = h.big_request("summary_1e6")
        h.closed_loop(eng.addr, body, 16, 3)
        for _ in range(3):
            if os.environ.get("PRE7"):
                h.closed_loop(eng.addr, h.big_request("summary_1e7"), 1, 4, max_msg=h.BIG_MSG_MB << 20)
                time.sleep(3)
            peak = [0.0]
            stop = threading.Event()

            def sample():
                while not stop.is_set():
                    peak[0] = max(peak[0], h.rss_mb(eng.pid) or 0.0)
                    stop.wait(0.05)

            t = threading.Thread(target=sample)
            t.start()
            c0 = h.cpu_s(eng.pid)
            r = h.closed_loop(eng.addr, body, 16, 5)
            c1 = h.cpu_s(eng.pid)
            stop.set()
            t.join()
            out.append("%.0f req/s %.1f ms CPU/call peak %.0f MiB" % (r["rps"], (c1 - c0) * 1000 / r["calls"], peak[0]))
            time.sleep(3)
    finally:
        eng.stop()
    print(name.ljust(10), " | ".join(out), flush=True)


def main():
    alternate(VARIANTS, run, sys.argv[1:] or ["default", "region1m"])


if __name__ == "__main__":
    main()
