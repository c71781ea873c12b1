"""numpy side of the kernel comparison: timeit of the numpy equivalents of the engine's native kernels.

    python bench/numpy_kernels.py --data FILE [--json OUT]

FILE holds little-endian float64 values (the same file the JMH run reads). Prints/writes microseconds per
call (median of the repeats) for mean, std (ddof=1), percentile (90, linear), median, and summary = the
separate numpy calls a Python service makes for the engine's summary object (the baseline's _summary).
"""

import argparse
import json
import os
import statistics
import sys
import timeit

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "baseline"))
from algorithms import _summary  # noqa: E402  (the baseline's summary: the same separate numpy calls)


def make_data(path, n=1_000_000, seed=42):
    x = np.random.default_rng(seed).standard_normal(n)
    x.astype("<f8").tofile(path)


KERNELS = {
    "mean": lambda x: float(np.mean(x)),
    "std": lambda x: float(np.std(x, ddof=1)),
    "percentile": lambda x: float(np.percentile(x, 90.0)),
    "median": lambda x: float(np.median(x)),
    "summary": _summary,
}


def time_kernel(fn, x, repeats=7, min_time=0.2):
    t = timeit.Timer(lambda: fn(x))
    number = 1
    while True:
        if t.timeit(number) >= min_time:
            break
        number *= 2
    runs = [t.timeit(number) / number * 1e6 for _ in range(repeats)]
    return {"us_per_op": statistics.median(runs), "min_us": min(runs), "max_us": max(runs), "number": number,
            "repeats": repeats}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="little-endian float64 file (created if missing)")
    ap.add_argument("--json", help="write results here")
    ap.add_argument("--kernel", action="append", help="only these kernels (repeatable)")
    args = ap.parse_args(argv)
    if not os.path.exists(args.data):
        make_data(args.data)
    x = np.fromfile(args.data, dtype="<f8")
    out = {"numpy": np.__version__, "n": int(x.size), "kernels": {}}
    for name in args.kernel or KERNELS:
        out["kernels"][name] = time_kernel(KERNELS[name], x)
        print("numpy %-10s %10.1f us/op" % (name, out["kernels"][name]["us_per_op"]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
