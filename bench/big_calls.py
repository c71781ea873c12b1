"""Where a large request's engine time goes: sequential calls of one of the harness's large requests against a
fresh engine (default JVM flags, or BENCH_JAVA_OPTS), printing each call's end-to-end time and its
metadata.stats timings (decode_us, execution_time_us, compute_us), then the engine's CPU per call by thread
(/proc/PID/task/*/stat) and its RSS idle before and 10 s after.

    [W=workers] bench/.venv/bin/python bench/big_calls.py summary_1e7|summary_1e6|mean_1e6 [CALLS]
"""
import collections
import os
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


def thread_cpu(pid):
    """CPU seconds per thread name (numbered pool threads summed)."""
    out = collections.Counter()
    for t in os.listdir("/proc/%d/task" % pid):
        try:
            s = open("/proc/%d/task/%s/stat" % (pid, t)).read()
        except OSError:
            continue  # the thread ended
        name = re.sub(r"[-#]?\d+$", "", s[s.index("(") + 1:s.rindex(")")])
        f = s[s.rindex(")") + 2:].split()
        out[name] += (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    return out


def main():
    name = sys.argv[1] if len(sys.argv) > 1 else "summary_1e7"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 12
    eng = h.Engine(int(os.environ.get("W", "0")), test_mode=False)
    try:
        eng.wait_ready()
        time.sleep(h.IDLE_SETTLE_S)
        print("idle RSS %.1f MiB" % h.rss_mb(eng.pid))
        req = h.big_request(name)
        ch = h.channel(eng.addr, max_msg=h.BIG_MSG_MB << 20)
        call = h.analyze_raw(ch)
        for _ in range(3):  # warm-up
            h.check(call(req, timeout=300), name)
        before = thread_cpu(eng.pid)
        e2e = []
        for _ in range(n):
            t0 = time.perf_counter()
            st = h.check(call(req, timeout=300), name).metadata.stats
            e2e.append((time.perf_counter() - t0) * 1000)
            print("  call %6.1f ms: decode %s us, execution %s us, kernel %s us"
                  % (e2e[-1], st.get("decode_us"), st.get("execution_time_us"), st.get("compute_us")))
        after = thread_cpu(eng.pid)
        ch.close()
        print("e2e p50 %.1f ms; engine CPU per call by thread:" % statistics.median(e2e))
        total = 0.0
        for k in sorted(after, key=lambda k: before.get(k, 0) - after[k]):
            d = (after[k] - before.get(k, 0)) / n * 1000
            total += d
            if d >= 0.05:
                print("  %-28s %7.2f ms" % (k, d))
        print("  total %.2f ms" % total)
        time.sleep(10)
        print("RSS 10 s after %.1f MiB" % h.rss_mb(eng.pid))
    finally:
        eng.stop()


if __name__ == "__main__":
    main()
