"""Profiles the engine under the benchmark loads, for the targets bench.sh reports as missed.

    bench/.venv/bin/python bench/profile.py [--duration S] [--load NAME]...

JVM: the engine runs with JFR (-XX:StartFlightRecording, settings=profile); at exit the recording is
summarised with `jfr print --events jdk.ExecutionSample` into the hottest top frames and the hottest
frames anywhere on the stack (inclusive), plus GC pauses. Python worker: py-spy (installed into bench/.venv
from PyPI if missing) samples one worker during the Python-path load and prints its hottest frames.
Output: bench/results/raw/profile-*.txt (+ the .jfr and py-spy raw files).

Loads: mean_c32 (ghz, mean over 100 points, 32 concurrent), summary (10^6-point summary, sequential),
python (trivial Python algorithm over 100 points, sequential), payload (10^6 points through a worker),
batch (BatchAnalyze 1000 mixed items), startup (JFR of start-up only).
"""

import argparse
import collections
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

LOADS = ["mean_c32", "summary", "python", "payload", "batch", "startup"]


def summarise_jfr(jfr_file, out, top=25):
    r = subprocess.run(["jfr", "print", "--events", "jdk.ExecutionSample", "--stack-depth", "64", jfr_file],
                       capture_output=True, text=True)
    if r.returncode != 0:
        out.write("jfr print failed: %s\n" % r.stderr[-500:])
        return
    self_c, incl_c = collections.Counter(), collections.Counter()
    samples = 0
    stack = None
    for line in r.stdout.splitlines():
        s = line.strip()
        if s.startswith("jdk.ExecutionSample"):
            stack = []
        elif s.startswith("stackTrace = ["):
            stack = []
        elif stack is not None and s.endswith("]") and s == "]":
            if stack:
                samples += 1
                self_c[stack[0]] += 1
                for f in set(stack):
                    incl_c[f] += 1
            stack = None
        elif stack is not None and "line:" in s:
            stack.append(s.split("  line:")[0].strip())
    out.write("JFR execution samples: %d\n\nTop frames (self):\n" % samples)
    for f, c in self_c.most_common(top):
        out.write("  %5.1f%%  %s\n" % (100.0 * c / max(1, samples), f))
    out.write("\nHottest frames anywhere on the stack (inclusive):\n")
    for f, c in incl_c.most_common(top):
        out.write("  %5.1f%%  %s\n" % (100.0 * c / max(1, samples), f))
    g = subprocess.run(["jfr", "summary", jfr_file], capture_output=True, text=True).stdout
    out.write("\njfr summary (event counts):\n")
    for line in g.splitlines():
        if any(k in line for k in ("GarbageCollection", "ExecutionSample", "ObjectAllocationSample",
                                   "ThreadPark", "JavaMonitorEnter")):
            out.write("  " + line.strip() + "\n")


def pyspy_bin():
    exe = os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(exe):
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "py-spy"],
                       check=True)
    return exe


def summarise_pyspy(raw_file, out, top=25):
    self_c, incl_c = collections.Counter(), collections.Counter()
    total = 0
    with open(raw_file) as f:
        for line in f:
            stack, _, n = line.rstrip().rpartition(" ")
            if not stack:
                continue
            n = int(n)
            frames = stack.split(";")
            total += n
            self_c[frames[-1]] += n
            for fr in set(frames):
                incl_c[fr] += n
    out.write("py-spy samples: %d\n\nTop frames (self):\n" % total)
    for fr, c in self_c.most_common(top):
        out.write("  %5.1f%%  %s\n" % (100.0 * c / max(1, total), fr))
    out.write("\nInclusive:\n")
    for fr, c in incl_c.most_common(top):
        out.write("  %5.1f%%  %s\n" % (100.0 * c / max(1, total), fr))


def main(argv=None):
    ap = argparse.ArgumentParser(description="Profile the engine under benchmark loads (JFR + py-spy)")
    ap.add_argument("--duration", type=int, default=15)
    ap.add_argument("--load", action="append", choices=LOADS)
    args = ap.parse_args(argv)
    os.makedirs(H.RAW, exist_ok=True)
    base_opts = H.jvm_opts()
    for load in args.load or LOADS:
        jfr_file = os.path.join(H.RAW, "profile-%s.jfr" % load)
        if os.path.exists(jfr_file):
            os.remove(jfr_file)
        os.environ["BENCH_JAVA_OPTS"] = " ".join(base_opts + [
            "-XX:StartFlightRecording=filename=%s,settings=profile,dumponexit=true" % jfr_file])
        eng = H.Engine(H.ENGINE_WORKERS, tag="engine-profile-%s" % load)
        report = os.path.join(H.RAW, "profile-%s.txt" % load)
        with open(report, "w") as out:
            try:
                eng.wait_ready(120)
                out.write("load %s: engine healthy %.2f s, workers ready %.2f s\n" % (load, eng.t_healthy,
                                                                                       eng.t_ready))
                if load != "startup":
                    H.warm_up(eng.addr, args.duration)
                spy = None
                if load in ("python", "payload", "batch"):
                    code, h = eng.health()
                    pids = [int(w["pid"]) for w in eng.ready_workers(h)]
                    spy_raw = os.path.join(H.RAW, "profile-%s-pyspy.txt" % load)
                    spy = subprocess.Popen([pyspy_bin(), "record", "--format", "raw", "-r", "200", "-d",
                                            str(args.duration), "-o", spy_raw, "-p", str(pids[0])],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                t = time.monotonic()
                if load == "mean_c32":
                    res = H.sc_mean_c32(eng.addr, "profile", args.duration)
                elif load == "summary":
                    res = H.sc_summary(eng.addr, "profile", args.duration)
                elif load == "python":
                    res = H.sc_python_overhead(eng.addr, args.duration)
                elif load == "payload":
                    res = H.sc_payload(eng.addr, args.duration)
                elif load == "batch":
                    res = H.sc_batch(eng.addr, args.duration)
                else:
                    res = {}
                out.write("result: %s\n\n" % res)
                if spy:
                    spy.wait(args.duration + 60)
                    out.write("---- worker pid %d (py-spy)\n" % pids[0])
                    summarise_pyspy(spy_raw, out)
                    out.write("\n")
            except H.NotRun as e:
                out.write("not run: %s\n" % e)
            finally:
                eng.stop()
            time.sleep(0.5)
            if os.path.exists(jfr_file):
                out.write("---- engine JVM (JFR %s)\n" % os.path.basename(jfr_file))
                summarise_jfr(jfr_file, out)
        print(open(report).read()[:6000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
