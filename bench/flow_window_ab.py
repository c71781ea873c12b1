"""Same-run A/B of the HTTP/2 flow-control window on the large-request loads.

    BENCH_BEFORE_JAR=/path/to/old/analytics-engine.jar \
        bench/.venv/bin/python bench/flow_window_ab.py [--rounds N] [--duration S]

Starts three engines without workers (so only the request path differs): the current jar with
flow_window_mb=16 (the default) and =1 (grpc-java's own default window), and BENCH_BEFORE_JAR if set.
After the same warm-up on each, every round runs mean_1e6 (sequential, p50) and summary_1e6_c4
(4 concurrent, req/s) against each engine, rotating the order per round; the per-round numbers and
their medians are printed as JSON. Uses bench/harness.py's clients and engine launcher (JVM flags of
scripts/run.sh, every process stopped by PID). Run `scripts/bench.sh --help` once first (bench/.venv).
"""

import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per measurement")
    args = ap.parse_args()
    engines = {}
    try:
        engines["window_16mib"] = H.Engine(0, tag="ab-w16", extra_env={"ANALYTICS_FLOW_WINDOW_MB": "16"})
        engines["window_1mib"] = H.Engine(0, tag="ab-w1", extra_env={"ANALYTICS_FLOW_WINDOW_MB": "1"})
        if os.environ.get("BENCH_BEFORE_JAR"):
            engines["before"] = H.Engine(0, tag="ab-before", jar=os.environ["BENCH_BEFORE_JAR"])
        for e in engines.values():
            e.wait_ready()
        req = H.big_request("mean_1e6")
        for e in engines.values():
            H.timed_calls(e.addr, req, args.duration, what="warm-up")
            H.sc_summary_c4(e.addr, "warm-up", args.duration)
        res = {k: {"mean_1e6_p50_ms": [], "summary_1e6_c4_rps": []} for k in engines}
        names = list(engines)
        for r in range(args.rounds):
            for k in names[r % len(names):] + names[:r % len(names)]:
                calls = H.timed_calls(engines[k].addr, req, args.duration, min_calls=10, what="mean 10^6")
                res[k]["mean_1e6_p50_ms"].append(statistics.median(c[0] for c in calls) / 1000.0)
                res[k]["summary_1e6_c4_rps"].append(H.sc_summary_c4(engines[k].addr, k, args.duration)["rps"])
            print("round %d: %s" % (r, {k: (round(v["mean_1e6_p50_ms"][-1], 2), round(v["summary_1e6_c4_rps"][-1], 1))
                                          for k, v in res.items()}), file=sys.stderr, flush=True)
        for v in res.values():
            v["median"] = {m: statistics.median(v[m]) for m in ("mean_1e6_p50_ms", "summary_1e6_c4_rps")}
        print(json.dumps(res, indent=1))
    finally:
        for e in engines.values():
            e.stop()


if __name__ == "__main__":
    main()
