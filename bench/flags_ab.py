"""A/B of default-JVM-flag variants on large requests: idle RSS, then engine CPU per call and throughput for
`mean` over 10^6 points (1 caller), `summary` over 10^6 points (4 callers) and `summary` over 10^7 points
(1 caller, 80 MB), then the RSS peak of 16 callers sending 10^6-point summaries and the RSS 10 s after them;
each variant on a fresh engine without workers, rounds alternating the variants (ratios within a round; the
machine is noisy).

    bench/.venv/bin/python bench/flags_ab.py [VARIANT...]      (variants: see VARIANTS)
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

NO_CLEANER = ["-Dio.netty.tryReflectionSetAccessible=false"]
# The defaults are read from scripts/analytics-server (harness.jvm_opts); each variant appends to them.
os.environ.pop("BENCH_JAVA_OPTS", None)
DEFAULT = h.jvm_opts()
VARIANTS = {
    "default": [],
    "cleaner": NO_CLEANER,            # Netty's direct memory through java.nio again (zeroed, with a Cleaner)
    "newsize24": ["-XX:NewSize=24m"],  # a larger minimum young generation
    "notrim": ["-XX:TrimNativeHeapInterval=0"],  # without the JVM's periodic glibc trim
    "trim1s": ["-XX:TrimNativeHeapInterval=1000"],
    # G1 heap growth under 16 concurrent 8 MB requests: more GC time allowed -> less expansion (default 12)
    "gctr4": ["-XX:GCTimeRatio=4"],
    "gctr2": ["-XX:GCTimeRatio=2"],
    # G1 region size: 1 MiB by default for a 1 GiB heap, so a 10^6-point array (8 MB) needs 8 contiguous free
    # regions, and G1 expands the heap when a fragmented heap has none; with 8 MiB regions it fits in one
    "region1m": ["-XX:G1HeapRegionSize=1m"],
    "region8m": ["-XX:G1HeapRegionSize=8m"],
    # collectors: these replace the default's collector flag instead of appending
    "serial": ["-XX:+UseSerialGC"],
    "g1": ["-XX:+UseG1GC"],
    "parallel": ["-XX:+UseParallelGC"],
    # gRPC's own pooled allocator for its network buffers (the default until Netty 4.2's adaptive one)
    "pooled": ["-Dio.grpc.netty.useCustomAllocator=true"],
    # no pool at all: every network buffer malloc'd and freed
    "unpooled": ["-Dio.netty.allocator.type=unpooled"],
    # the defaults before the seventh pass (bench/README.md): the adaptive allocator's full mode (per-event-loop
    # magazines, chunks up to 8 MiB, kept for reuse) and glibc's own malloc settings ("ENV:-NAME" unsets NAME in
    # the engine's environment, "ENV:NAME=VALUE" sets it)
    "retain": ["-Dio.netty.allocator.lowMemory=false", "ENV:-MALLOC_ARENA_MAX", "ENV:-MALLOC_MMAP_THRESHOLD_",
               "ENV:-MALLOC_TRIM_THRESHOLD_"],
    # C2 only: no C1 tiers, so no profiled C1 code next to the C2 code in the code cache
    "notiered": ["-XX:-TieredCompilation"],
    # C2 without uncommon traps where a profile says a branch is never taken (no unstable_if deoptimizations,
    # no recompiles when a later request takes it); the per-method limit also turns off loop predication
    "notraps": ["-XX:PerMethodTrapLimit=0"],
    "bctraps0": ["-XX:PerBytecodeTrapLimit=0"],
    # the low-memory allocator without the malloc settings: freed chunks go back to the kernel and fault in again
    "lowmem_only": ["ENV:-MALLOC_ARENA_MAX", "ENV:-MALLOC_MMAP_THRESHOLD_", "ENV:-MALLOC_TRIM_THRESHOLD_"],
}
COLLECTORS = ("-XX:+UseSerialGC", "-XX:+UseG1GC", "-XX:+UseParallelGC")


def with_flags(extra):
    """The default flags plus `extra`; a collector flag in `extra` replaces the default's collector and its
    G1 options instead of adding to them."""
    if any(f in COLLECTORS for f in extra):
        return [f for f in DEFAULT if f not in COLLECTORS and not f.startswith("-XX:G1")] + extra
    return DEFAULT + extra


def alternate(variants, run, names):
    """Two rounds of run(name) over `names` (every variant when empty), alternating the variants."""
    names = names or list(variants)
    for n in names:
        if n not in variants:
            sys.exit("unknown variant %r (known: %s)" % (n, ", ".join(variants)))
    for _ in range(2):
        for n in names:
            run(n)


def run(name):
    flags = [f for f in VARIANTS[name] if not f.startswith("ENV:")]
    env = {}
    for f in VARIANTS[name]:
        if f.startswith("ENV:-"):
            env[f[5:]] = None
        elif f.startswith("ENV:"):
            k, v = f[4:].split("=", 1)
            env[k] = v
    os.environ["BENCH_JAVA_OPTS"] = " ".join(with_flags(flags))
    eng = h.Engine(0, test_mode=False, extra_env=env)
    eng.wait_ready()
    try:
        time.sleep(3)  # measurement points: idle after start-up, then 10 s after it
        out = [name, "idle %.0f MiB" % h.rss_mb(eng.pid)]
        time.sleep(7)
        idle = h.rss_mb(eng.pid)
        out.append("10 s: %.0f MiB" % idle)
        for req, conc in (("mean_1e6", 1), ("summary_1e6", 4), ("summary_1e7", 1)):
            body = h.big_request(req)
            big = h.BIG_MSG_MB << 20
            h.closed_loop(eng.addr, body, conc, 3, max_msg=big)  # warm-up
            c0 = h.cpu_s(eng.pid)
            r = h.closed_loop(eng.addr, body, conc, 5, max_msg=big)
            c1 = h.cpu_s(eng.pid)
            out.append("%s c=%d %.1f req/s, engine CPU %.2f ms/call"
                       % (req, conc, r["rps"], (c1 - c0) * 1000 / max(1, r["calls"])))
        h.PIDS["ours"] = eng.pid
        h.IDLE_RSS["ours"] = idle  # "back to idle" = within 10 % of the 10 s reading
        r = h.sc_rss_c16(eng.addr, "ours", 5)
        back = ("back within 10 %% of idle in %.1f s" % r["back_to_idle_s"] if r["back_to_idle_s"] is not None
                else "not back within 10 % of idle in 15 s")
        out.append("c=16 %.1f req/s, peak %.0f MiB, %s (%.0f MiB; %.0f MiB just before it)" % (
            r["rps"], r["rss_peak_mb"], back, r["rss_after_15s_mb"], r["rss_before_mb"]))
    finally:
        eng.stop()
    print(" | ".join(out), flush=True)


def main():
    alternate(VARIANTS, run, sys.argv[1:])


if __name__ == "__main__":
    main()
