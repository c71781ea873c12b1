"""Two engine jars on the large-request loads, a fresh engine per measurement (2 workers, the default JVM
flags), rounds alternating which jar goes first: `summary` over 10^6 points at c=4 (req/s and engine CPU per
call) and `mean` over 10^6 points sequentially from the Python client (p50).

    bench/.venv/bin/python bench/jar_ab.py JAR_A JAR_B [ROUNDS]

A jar finds its dependencies next to it (the manifest's Class-Path is lib/...): copy an older build into
engine/target/ under another name, or point at engine/target/analytics-engine.jar of a git worktree.
"""
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


def measure(jar):
    eng = h.Engine(2, test_mode=False, jar=jar)
    try:
        eng.wait_ready()
        h.closed_loop(eng.addr, h.big_request("summary_1e6"), 4, 3)  # warm-up
        h.timed_calls(eng.addr, h.big_request("mean_1e6"), 2)
        c0 = h.cpu_s(eng.pid)
        c4 = h.closed_loop(eng.addr, h.big_request("summary_1e6"), 4, 5)
        c1 = h.cpu_s(eng.pid)
        seq = h.sc_mean_1e6(eng.addr, "ours", 5)
        return c4["rps"], (c1 - c0) * 1000 / max(1, c4["calls"]), seq["p50_ms"]
    finally:
        eng.stop()


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    jars = {"A": sys.argv[1], "B": sys.argv[2]}
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    res = {k: [] for k in jars}
    for r in range(rounds):
        for k in (("A", "B") if r % 2 == 0 else ("B", "A")):
            res[k].append(measure(jars[k]))
            rps, cpu, seq = res[k][-1]
            print("round %d %s: summary 10^6 c=4 %.1f req/s (engine CPU %.2f ms/call), mean 10^6 sequential p50 "
                  "%.2f ms" % (r, k, rps, cpu, seq), flush=True)
    for k, jar in jars.items():
        print("%s %s: medians c=4 %.1f req/s, %.2f ms CPU/call, sequential %.2f ms"
              % (k, jar, *(statistics.median(v[i] for v in res[k]) for i in range(3))))


if __name__ == "__main__":
    main()
