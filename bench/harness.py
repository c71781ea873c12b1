"""Benchmark driver: the engine against the baseline, side by side, in the same run.

Run through scripts/bench.sh (which builds, makes bench/.venv, generates stubs, installs ghz). Directly:

    bench/.venv/bin/python bench/harness.py [--scenario NAME]... [--duration S] [--runs N]

Every run starts fresh processes (engine with 2 workers and ANALYTICS_TEST_MODE=1, the baseline with a
thread pool), measures start-up and idle RSS, runs the selected scenarios alternating which side goes first,
kills one worker with SIGKILL to time its replacement, then (random_forest) restarts the engine with 1 worker,
and finally runs the JMH / numpy kernel comparison with no server running. Medians over runs, ratios per run.
Everything started here is stopped by PID.
"""

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
sys.path.insert(0, os.path.join(BENCH, "baseline", "_gen"))

import grpc  # noqa: E402

import analytics_pb2 as pb  # noqa: E402

RESULTS = os.path.join(BENCH, "results")
RAW = os.path.join(RESULTS, "raw")
GHZ = os.path.join(ROOT, ".tools", "bin", "ghz")
ENGINE_JAR = os.path.join(ROOT, "engine", "target", "analytics-engine.jar")
WORKER_PY = os.path.join(ROOT, "py-worker", ".venv", "bin", "python")
MAX_MSG = 64 * 1024 * 1024
OPTIONS = {"prefer_rust": True, "allow_python": True, "timeout_ms": 60000, "include_metadata": True}

SCENARIOS = ["mean_c1", "mean_c32", "summary_1e6", "kernels", "python_overhead", "payload_8mb", "rf_c4",
             "batch_1000", "rss", "startup", "worker_replace", "fork_server", "summary_1e6_c4", "mean_1e6",
             "summary_1e7", "rss_c16"]
# Large-request scenarios (issue 13): also run against BENCH_BEFORE_JAR when set, an engine jar built from an
# earlier commit, so before/after are measured in the same run.
BIG_SCENARIOS = ["summary_1e6_c4", "mean_1e6", "summary_1e7", "rss_c16"]
BEFORE_JAR = os.environ.get("BENCH_BEFORE_JAR") or None
# The before jar's JVM flags: BENCH_BEFORE_JAVA_OPTS (e.g. the defaults that engine shipped with), else ours.
BEFORE_JAVA_OPTS = os.environ.get("BENCH_BEFORE_JAVA_OPTS") or None
# The before engine runs on its own defaults: without the launcher's malloc settings (default_malloc_env, added
# after c584458) unless BENCH_BEFORE_MALLOC_ENV=1.
BEFORE_MALLOC_ENV = os.environ.get("BENCH_BEFORE_MALLOC_ENV") == "1"
# 10^7 doubles are 80 MB: the engines get max_message_mb = BIG_MSG_MB (default 64) for summary_1e7.
BIG_MSG_MB = 100
ENGINE_WORKERS = 2
BASELINE_THREADS = 10


def log(msg):
    print("[bench %s] %s" % (dt.datetime.now(dt.timezone.utc).strftime("%H:%M:%S"), msg), flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NotRun(Exception):
    """A scenario that cannot run (part of the engine missing): recorded as 'not run: reason'."""


def cpu_s(pid):
    """utime + stime of a process (seconds), from /proc/PID/stat; None if gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


PIDS = {}  # side -> server PID, for CPU time per request


def rss_mb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


# ============================================================================================ processes

class Proc:
    def __init__(self, name, cmd, env=None, cwd=ROOT):
        self.name = name
        self.log_path = os.path.join(RAW, "%s.log" % name)
        self.log = open(self.log_path, "ab")
        self.log.write(("\n==== %s %s\n" % (dt.datetime.now().isoformat(), " ".join(cmd))).encode())
        self.log.flush()
        self.t0 = time.monotonic()
        self.p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL)
        self.pid = self.p.pid

    def alive(self):
        return self.p.poll() is None

    def stop(self, grace=10.0):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(grace)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        self.log.close()

    def tail(self, n=15):
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def launcher_default(name):
    """The words of a one-line default in the deployed launcher, `NAME="..."` in scripts/analytics-server (the one
    place the engine's default JVM flags and malloc settings are written); [] when it cannot be read."""
    try:
        with open(os.path.join(ROOT, "scripts", "analytics-server")) as f:
            m = re.search(r'^%s="([^"]*)"$' % re.escape(name), f.read(), re.MULTILINE)
    except OSError:
        return []
    return m.group(1).split() if m else []


def jvm_opts():
    """BENCH_JAVA_OPTS, else the default JVM flags of the deployed launcher (how the engine is meant to run;
    scripts/run.sh starts it through the launcher)."""
    if "BENCH_JAVA_OPTS" in os.environ:
        return os.environ["BENCH_JAVA_OPTS"].split()
    return launcher_default("default_java_opts")


def malloc_env():
    """The launcher's glibc malloc settings for the JVM, each where this environment does not set it already,
    as the launcher does."""
    pairs = dict(kv.split("=", 1) for kv in launcher_default("default_malloc_env"))
    out = {k: v for k, v in pairs.items() if k not in os.environ}
    out["ANALYTICS_JVM_ONLY_ENV"] = " ".join(out)  # the workers do not inherit them
    return out


class Engine:
    def __init__(self, workers, test_mode=True, tag="engine", jar=ENGINE_JAR, extra_env=None, opts=None,
                 launcher_env=True):
        """extra_env: added to the environment (a None value removes the variable); launcher_env: with the
        launcher's malloc settings (malloc_env), as scripts/analytics-server and scripts/run.sh start it."""
        self.workers = workers
        self.port = free_port()
        self.addr = "127.0.0.1:%d" % self.port
        env = dict(os.environ)
        if launcher_env:
            env.update(malloc_env())
        for k, v in (extra_env or {}).items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        env["ANALYTICS_PYTHON"] = WORKER_PY
        env["ANALYTICS_MAX_MESSAGE_MB"] = str(BIG_MSG_MB)
        if test_mode:
            env["ANALYTICS_TEST_MODE"] = "1"
        java = ["java"] + (opts.split() if opts is not None else jvm_opts()) + [
            "-jar", jar, "--listen", self.addr, "--workers", str(workers)]
        self.proc = Proc(tag, java, env=env)
        self.pid = self.proc.pid
        self.t_healthy = None
        self.t_ready = None
        self.t_listening = None

    def health(self):
        """(status code, parsed JSON or None)."""
        try:
            with urllib.request.urlopen("http://%s/health" % self.addr, timeout=2) as r:
                return r.status, json.loads(r.read().decode())
        except urllib.error.HTTPError as e:
            try:
                return e.code, json.loads(e.read().decode())
            except ValueError:
                return e.code, None
        except (OSError, ValueError):
            return None, None

    @staticmethod
    def worker_list(h):
        py = (h or {}).get("python") or {}
        w = py.get("workers")
        if isinstance(w, list):
            return w
        w = py.get("worker_list")
        return w if isinstance(w, list) else []

    def ready_workers(self, h):
        return [w for w in self.worker_list(h)
                if int(w.get("pid", -1)) > 0 and w.get("state") in ("ready", "busy", "idle")]

    def wait_ready(self, deadline_s=60.0):
        """Polls /health: records time to HTTP 200 and to all workers ready."""
        end = self.proc.t0 + deadline_s
        while time.monotonic() < end:
            if not self.proc.alive():
                raise NotRun("engine exited during start-up (rc=%s): %s" % (self.proc.p.returncode,
                                                                             self.proc.tail(6)))
            code, h = self.health()
            now = time.monotonic()
            if code is not None and self.t_listening is None:
                self.t_listening = now - self.proc.t0
            if code == 200 and self.t_healthy is None:
                self.t_healthy = now - self.proc.t0
            if code == 200 and (self.workers == 0 or len(self.ready_workers(h)) >= self.workers):
                self.t_ready = now - self.proc.t0
                return h
            time.sleep(0.02)
        raise NotRun("engine not healthy with %d ready workers within %.0f s: %s"
                     % (self.workers, deadline_s, self.proc.tail(6)))

    def stop(self):
        self.proc.stop()


class Baseline:
    def __init__(self, threads=BASELINE_THREADS):
        self.port = free_port()
        self.addr = "127.0.0.1:%d" % self.port
        self.proc = Proc("baseline", [sys.executable, os.path.join(BENCH, "baseline", "server.py"),
                                      "--port", str(self.port), "--workers", str(threads)])
        self.pid = self.proc.pid
        ch = grpc.insecure_channel(self.addr)
        try:
            grpc.channel_ready_future(ch).result(timeout=30)
        except grpc.FutureTimeoutError:
            raise RuntimeError("baseline did not start: %s" % self.proc.tail())
        finally:
            ch.close()
        self.t_ready = time.monotonic() - self.proc.t0

    def stop(self):
        self.proc.stop()


# ============================================================================================ clients

def channel(addr, max_msg=MAX_MSG):
    return grpc.insecure_channel(addr, options=[("grpc.max_receive_message_length", max_msg),
                                               ("grpc.max_send_message_length", max_msg)])


def analyze_raw(ch):
    """Unary Analyze taking a pre-serialised request (so the Python client's encode cost is not measured)."""
    return ch.unary_unary("/analytics.AnalyticsEngine/Analyze", request_serializer=None,
                          response_deserializer=pb.AnalysisResponse.FromString)


def request(alg, data, params=None, shape=None, target=None, rid="bench"):
    r = pb.AnalysisRequest(request_id=rid, algorithm=alg, params=params or {},
                           options=pb.AnalysisOptions(**OPTIONS))
    r.data.extend(np.asarray(data, dtype=np.float64).ravel())
    if shape:
        r.shape.extend(shape)
    if target is not None:
        r.target.extend(np.asarray(target, dtype=np.float64))
    return r


def check(resp, what):
    if not resp.success:
        raise NotRun("%s failed: %s %s" % (what, pb.ErrorCode.Name(resp.error_code), resp.error_message))
    return resp


def timed_calls(addr, req_bytes, duration, min_calls=5, max_calls=100000, what="call"):
    """Sequential calls for `duration` seconds (at least min_calls): list of (latency_us, response)."""
    ch = channel(addr)
    call = analyze_raw(ch)
    out = []
    try:
        end = time.monotonic() + duration
        while (time.monotonic() < end or len(out) < min_calls) and len(out) < max_calls:
            t0 = time.perf_counter_ns()
            resp = call(req_bytes, timeout=120)
            out.append(((time.perf_counter_ns() - t0) / 1000.0, resp))
            check(resp, what)
    finally:
        ch.close()
    return out


def closed_loop(addr, req_bytes, concurrency, duration, what="call", max_msg=MAX_MSG):
    """`concurrency` threads each calling back to back for `duration` s; completed calls / elapsed."""
    ch = channel(addr, max_msg=max_msg)
    call = analyze_raw(ch)
    counts = [0] * concurrency
    shed = [0] * concurrency
    shed_msg = []
    lat = [[] for _ in range(concurrency)]
    errors = []
    start = time.monotonic()
    end = start + duration

    def worker(i):
        try:
            while time.monotonic() < end:
                t0 = time.perf_counter()
                resp = call(req_bytes, timeout=300)
                if not resp.success and resp.error_code == pb.OVERLOADED:
                    # load shedding by the server: counted, not completed work; the client tries again
                    shed[i] += 1
                    shed_msg[:] = [resp.error_message]
                    continue
                if not resp.success:
                    errors.append("%s %s" % (pb.ErrorCode.Name(resp.error_code), resp.error_message))
                    return
                lat[i].append(time.perf_counter() - t0)
                counts[i] += 1
        except grpc.RpcError as e:
            errors.append(str(e))

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    elapsed = time.monotonic() - start
    ch.close()
    if errors:
        raise NotRun("%s failed: %s" % (what, errors[0][:300]))
    all_lat = sorted(x for l in lat for x in l)
    if not sum(counts):
        raise NotRun("%s: no call completed in %.0f s (%d shed: %s)" % (what, elapsed, sum(shed),
                                                                        shed_msg[0] if shed_msg else ""))
    return {"calls": sum(counts), "elapsed_s": elapsed, "rps": sum(counts) / elapsed,
            "p50_ms": 1000 * all_lat[len(all_lat) // 2] if all_lat else None,
            "shed_overloaded": sum(shed), "shed_message": shed_msg[0] if shed_msg else None}


def ghz(addr, call, data, concurrency, duration, tag):
    """Runs ghz; returns its JSON report (latencies in ns)."""
    os.makedirs(RAW, exist_ok=True)
    data_file = os.path.join(RAW, "ghz-%s.json" % tag)
    with open(data_file, "w") as f:
        json.dump(data, f)
    out_file = os.path.join(RAW, "ghz-%s-out.json" % tag)
    # The request is the same on every call: ghz's default runs its call-data template engine over the JSON
    # on every send, which cost it 64-65 us of CPU per call (of 75-80 us in all) on the 2 cores the server
    # shares; without it 31-35 us (bench/README.md, "Sixth pass", "The load generator").
    cmd = [GHZ, "--insecure", "--disable-template-functions", "--disable-template-data",
           "--proto", os.path.join(ROOT, "proto", "analytics.proto"),
           "--import-paths", os.path.join(ROOT, "proto"), "--call", call, "-D", data_file,
           "-c", str(concurrency), "--connections", "1", "-z", "%ds" % duration, "--duration-stop", "wait",
           "--max-recv-message-size", "64MB", "--max-send-message-size", "64MB",
           "-O", "json", "-o", out_file, addr]
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0 or not os.path.exists(out_file):
        raise NotRun("ghz failed (rc=%d): %s" % (r.returncode, (r.stderr or r.stdout)[-400:]))
    with open(out_file) as f:
        rep = json.load(f)
    rep["client_cpu_s"] = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    errs = rep.get("errorDistribution") or {}
    if errs:
        raise NotRun("ghz saw errors: %s" % json.dumps(errs)[:300])
    return rep


def ghz_summary(rep):
    dist = {int(d["percentage"]): d["latency"] / 1000.0 for d in rep.get("latencyDistribution") or []}
    return {"count": rep["count"], "rps": rep["rps"],
            "client_cpu_us_per_req": rep["client_cpu_s"] * 1e6 / rep["count"] if rep["count"] else None, "p50_us": dist.get(50), "p90_us": dist.get(90),
            "p99_us": dist.get(99), "avg_us": rep["average"] / 1000.0}


# ============================================================================================ scenarios

SERIES_100 = np.random.default_rng(100).standard_normal(100)
SERIES_1E6 = np.random.default_rng(42).standard_normal(1_000_000)
MEAN_DATA = {"request_id": "bench", "algorithm": "mean", "data": SERIES_100.tolist(), "options": OPTIONS}


def ghz_with_cpu(addr, side, data, concurrency, duration, tag):
    """ghz run plus the server's CPU time per request (robust to a noisy machine)."""
    pid = PIDS.get(side)
    c0 = cpu_s(pid) if pid else None
    s = ghz_summary(ghz(addr, "analytics.AnalyticsEngine.Analyze", data, concurrency, duration, tag))
    c1 = cpu_s(pid) if pid else None
    if c0 is not None and c1 is not None and s["count"]:
        s["server_cpu_us_per_req"] = (c1 - c0) * 1e6 / s["count"]
    return s


def sc_mean_c1(addr, side, duration):
    return ghz_with_cpu(addr, side, MEAN_DATA, 1, duration, "mean_c1-" + side)


def sc_mean_c32(addr, side, duration):
    return ghz_with_cpu(addr, side, MEAN_DATA, 32, duration, "mean_c32-" + side)


_SUMMARY_REQ = None


def sc_summary(addr, side, duration):
    global _SUMMARY_REQ
    if _SUMMARY_REQ is None:
        _SUMMARY_REQ = request("summary", SERIES_1E6).SerializeToString()
    calls = timed_calls(addr, _SUMMARY_REQ, duration, min_calls=5, what="summary 10^6")
    lat = [c[0] for c in calls]
    res = json.loads(calls[0][1].result_json)
    return {"calls": len(lat), "p50_ms": statistics.median(lat) / 1000.0, "min_ms": min(lat) / 1000.0,
            "result": {k: res.get(k) for k in ("count", "mean", "median", "std", "q25", "q75", "autocorr")}}


_BIG = {}


def big_request(name):
    """The large requests, serialised once (the client's encode is not measured)."""
    if name not in _BIG:
        if name == "summary_1e7":
            data = np.random.default_rng(7).standard_normal(10_000_000)
            _BIG[name] = request("summary", data).SerializeToString()
        else:
            _BIG[name] = request(name.split("_")[0], SERIES_1E6).SerializeToString()
    return _BIG[name]


# Seconds of the same 4-caller load, on its own connection, before the measured one (both servers): the first
# seconds of concurrent large requests still compile and recompile the JIT's code for them (a fresh connection
# with interleaved 8 MB streams takes branches the sequential warm-up never did; JFR: C2 at 5-11 % of the
# engine's CPU, the first 5-s window 166-185 req/s where the next ones made 189-197; bench/README.md,
# "Eighth pass").
C4_WARM_S = 3


def sc_summary_c4(addr, side, duration):
    """summary over 10^6 points, 4 concurrent callers on one channel (one connection): throughput, after
    C4_WARM_S s of the same load (not counted)."""
    closed_loop(addr, big_request("summary_1e6"), 4, C4_WARM_S, what="summary 10^6 c=4 (warm-up)")
    return closed_loop(addr, big_request("summary_1e6"), 4, duration, what="summary 10^6 c=4")


def sc_mean_1e6(addr, side, duration):
    """mean over 10^6 points, sequential, end to end from the Python client; with the CPU time per call of
    the client (this process, every thread: grpcio's core sends from its own threads too) and of the server
    (/proc/PID/stat). The calls are sequential, so all of that CPU is spent inside the calls' wall time, on
    os.cpu_count() cores: (client + server CPU) / cores is a floor under the end-to-end time that no server
    change can lower below client CPU / cores (bench/README.md, "Eleventh pass")."""
    body = big_request("mean_1e6")
    pid = PIDS.get(side)
    r0, c0 = resource.getrusage(resource.RUSAGE_SELF), cpu_s(pid) if pid else None
    calls = timed_calls(addr, body, duration, min_calls=10, what="mean 10^6")
    r1, c1 = resource.getrusage(resource.RUSAGE_SELF), cpu_s(pid) if pid else None
    lat = [c[0] for c in calls]
    n = len(lat)
    client = (r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime) * 1000.0 / n
    server = (c1 - c0) * 1000.0 / n if c0 is not None and c1 is not None else None
    return {"calls": n, "p50_ms": statistics.median(lat) / 1000.0, "min_ms": min(lat) / 1000.0,
            "client_cpu_ms": client, "server_cpu_ms": server, "cores": os.cpu_count()}


def sc_summary_1e7(addr, side, duration):
    """summary over 10^7 points (80 MB) in one Analyze: engine-side time against the kernel's own time, per
    call, wall-clock, from the response's metadata.stats: engine-side = decode_us (the bulk decode of the
    received message into the array) + execution_time_us (validation, kernel, result), i.e. from the whole
    request received to the answer; kernel = compute_us. The median of the per-call ratios is reported.
    Also kept, as information: the end-to-end time over the kernel's (it adds the client's sending of 80 MB
    and the engine's receiving of it over HTTP/2) and the engine process's CPU time per call. Three calls
    before the measured ones warm the JIT up (a fresh engine runs this scenario alone in `--scenario` runs)."""
    pid = PIDS.get(side)
    req = big_request("summary_1e7")
    ch = channel(addr, max_msg=BIG_MSG_MB << 20)
    call = analyze_raw(ch)
    e2e, cpu, kernel, ratios, engine_side, e2e_ratios = [], [], [], [], [], []
    try:
        for _ in range(3):  # warm-up, as the other scenarios have: the JIT compiles the 10^7-point path
            check(call(req, timeout=300), "summary 10^7 (warm-up)")
        end = time.monotonic() + duration
        while time.monotonic() < end or len(e2e) < 3:
            c0 = cpu_s(pid) if pid else None
            t0 = time.perf_counter()
            resp = check(call(req, timeout=300), "summary 10^7")
            e2e.append((time.perf_counter() - t0) * 1000)
            c1 = cpu_s(pid) if pid else None
            if c0 is not None and c1 is not None:
                cpu.append((c1 - c0) * 1000)
            st = resp.metadata.stats
            if "compute_us" in st:
                kernel.append(int(st["compute_us"]) / 1000.0)
                e2e_ratios.append(e2e[-1] / max(kernel[-1], 1e-3))
                if "decode_us" in st and "execution_time_us" in st:
                    engine_side.append((int(st["decode_us"]) + int(st["execution_time_us"])) / 1000.0)
                    ratios.append(engine_side[-1] / max(kernel[-1], 1e-3))
            if len(e2e) >= 20:
                break
    finally:
        ch.close()
    out = {"calls": len(e2e), "p50_ms": statistics.median(e2e)}
    if cpu:
        out["engine_cpu_ms"] = statistics.median(cpu)
    if kernel:
        out["kernel_ms"] = statistics.median(kernel)
    if ratios:
        out["engine_over_kernel"] = statistics.median(ratios)
        out["engine_side_ms"] = statistics.median(engine_side)
    if e2e_ratios:
        out["e2e_over_kernel"] = statistics.median(e2e_ratios)
    return out


IDLE_RSS = {}  # side -> RSS (MiB) of the server IDLE_SETTLE_S after it became ready, before any load
# "Idle" RSS is read this long after the engine became ready: the JVM returns glibc's free memory every 2 s
# (-XX:TrimNativeHeapInterval in scripts/analytics-server) and HotSpot hands the JIT's compiler arenas to glibc
# every 5 s, so earlier readings still hold start-up's scratch memory (bench/README.md, "Idle RSS").
IDLE_SETTLE_S = 8.0


# The "warm idle" point before the 16-caller burst: the engine trims 1 s after the last call, G1 uncommits the
# shrunk heap ~0.1 s later and the JVM's periodic glibc trim runs every 2 s (bench/README.md, "Seventh pass").
WARM_SETTLE_S = 12.0


IDLE_MAPS = {}  # side -> the JVM's mappings (mappings()) when IDLE_RSS was read, for add_jvm_split
AFTER_MAPS = {}  # side -> the same 15 s after the 16-caller burst (sc_rss_c16)


def mappings(pid):
    """[(start, end, RSS in kB)] of every mapping of a process, from /proc/PID/smaps; [] if it is gone."""
    out = []
    try:
        with open("/proc/%d/smaps" % pid) as f:
            for line in f:
                m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) ", line)
                if m:
                    out.append([int(m.group(1), 16), int(m.group(2), 16), 0])
                elif line.startswith("Rss:") and out:
                    out[-1][2] = int(line.split()[1])
    except OSError:
        return []
    return out


def jvm_ranges(pid):
    """{"heap": (lo, hi), "code": (lo, hi)}: the Java heap's and the code cache's address ranges of a HotSpot
    JVM (jcmd GC.heap_info, Compiler.codecache); {} where jcmd fails. It attaches to the JVM (one more thread
    there from then on), so it is called once per engine, after that engine's last RSS reading."""
    def jcmd(*a):
        try:
            return subprocess.run(["jcmd", str(pid)] + list(a), capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            return ""
    out = {}
    m = re.search(r"heap\s+total \d+K, used \d+K \[0x([0-9a-f]+), 0x([0-9a-f]+)\)", jcmd("GC.heap_info"))
    if m:
        out["heap"] = (int(m.group(1), 16), int(m.group(2), 16))
    m = re.search(r"bounds \[0x([0-9a-f]+), 0x[0-9a-f]+, 0x([0-9a-f]+)\]", jcmd("Compiler.codecache"))
    if m:
        out["code"] = (int(m.group(1), 16), int(m.group(2), 16))
    return out


def jvm_split(maps, ranges):
    """RSS (MiB) of a JVM's mappings split into the Java heap, the JIT's code cache and the rest (class
    metadata, thread stacks, GC structures, glibc's heap, mapped libraries and the CDS archive)."""
    def within(lo, hi):
        return sum(kb for a, b, kb in maps if a >= lo and b <= hi) / 1024.0
    if not maps or "heap" not in ranges or "code" not in ranges:
        return None
    total = sum(kb for _, _, kb in maps) / 1024.0
    heap, code = within(*ranges["heap"]), within(*ranges["code"])
    return {"heap_mb": heap, "code_mb": code, "rest_mb": total - heap - code}


def add_jvm_split(res, side, pid):
    """Adds to res["rss_c16"][side] where the engine's RSS 15 s after the burst sits over its start-up idle
    size (jvm_split of both readings). Call it after the engine's last RSS reading of the run: it attaches."""
    idle, after = IDLE_MAPS.pop(side, None), AFTER_MAPS.pop(side, None)
    out = (res.get("rss_c16") or {}).get(side)
    if idle is None or after is None or not isinstance(out, dict) or "error" in out:
        return
    ranges = jvm_ranges(pid)
    out["split_idle"] = jvm_split(idle, ranges)
    out["split_after"] = jvm_split(after, ranges)


def sleep_until_idle_point(ready_at):
    """A measurement point IDLE_SETTLE_S after ready_at (time.monotonic()), not synchronisation."""
    time.sleep(max(0.0, ready_at + IDLE_SETTLE_S - time.monotonic()))


def sc_rss_c16(addr, side, duration):
    """Server RSS while 16 callers send 10^6-point summaries, and how fast it comes back to its idle size
    (the RSS it had after start-up, before any load: within 10 %), polled every 0.2 s for up to 15 s (a
    measurement, not synchronisation)."""
    pid = PIDS.get(side)
    if not pid:
        raise NotRun("no server PID")
    # The warm idle size: RSS once the server has been idle WARM_SETTLE_S after the warm-up and the scenarios
    # before this one (the engine's idle trim has run by then). The growth over it is what this burst itself keeps; the
    # growth from start-up's idle to it is what the first large requests leave (compiled code, loaded classes,
    # pools). A measurement point, not synchronisation.
    time.sleep(WARM_SETTLE_S)
    before = rss_mb(pid)
    idle = IDLE_RSS.get(side)
    peak = [before or 0.0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            v = rss_mb(pid)
            if v is not None:
                peak[0] = max(peak[0], v)
            stop.wait(0.1)

    t = threading.Thread(target=sample)
    t.start()
    try:
        load = closed_loop(addr, big_request("summary_1e6"), 16, duration, what="summary 10^6 c=16")
    finally:
        stop.set()
        t.join()
    t_end = time.monotonic()
    back_s = None
    while time.monotonic() - t_end < 15:
        v = rss_mb(pid)
        if back_s is None and v is not None and idle is not None and v <= idle * 1.10:
            back_s = time.monotonic() - t_end
        time.sleep(0.2)
    if side in IDLE_MAPS:
        AFTER_MAPS[side] = mappings(pid)  # split by add_jvm_split once this engine has no reading left
    return {"rss_idle_mb": idle, "rss_before_mb": before, "rss_peak_mb": peak[0], "rss_after_15s_mb": rss_mb(pid),
            "back_to_idle_s": back_s, "rps": load["rps"]}


def python_request(ch, data, rid="bench"):
    """A trivial Python-run request: `_test_echo` (engine in test mode), else `mean` with prefer_rust=false
    (every statistic also has a Python implementation). Returns (algorithm used, serialised request)."""
    why = ""
    for alg in ("_test_echo", "mean"):
        req = request(alg, data, rid=rid)
        if alg == "mean":
            req.options.prefer_rust = False
        resp = analyze_raw(ch)(req.SerializeToString(), timeout=120)
        if resp.success and resp.metadata.implementation == "python":
            return alg, req
        why = "%s %s (implementation %r)" % (pb.ErrorCode.Name(resp.error_code), resp.error_message,
                                             resp.metadata.implementation)
        log("trivial Python algorithm %s not usable: %s" % (alg, why))
    raise NotRun("no trivial Python algorithm ran on a worker: %s" % why)


def python_calls(addr, data, duration, min_calls):
    ch = channel(addr)
    try:
        alg, req = python_request(ch, data)
    finally:
        ch.close()
    calls = timed_calls(addr, req.SerializeToString(), duration, min_calls=min_calls, what=alg)
    for _, resp in calls:
        if "worker_compute_us" not in resp.metadata.stats:
            raise NotRun("%s response has no metadata.stats.worker_compute_us" % alg)
    return alg, req, calls


def sc_python_overhead(addr, duration, pid=None):
    """A trivial Python algorithm over 100 points: e2e (ghz p50; Python client per call) minus worker compute.
    pid: the engine's, for its CPU time per call during the ghz run (robust to a noisy machine)."""
    alg, req, calls = python_calls(addr, SERIES_100, max(2.0, duration / 2), 50)
    comp = [float(c[1].metadata.stats["worker_compute_us"]) for c in calls]
    rt = [float(c[1].metadata.stats.get("worker_roundtrip_us", "nan")) for c in calls]
    per_call = [c[0] - w for c, w in zip(calls, comp)]
    data = {"request_id": "bench", "algorithm": alg, "data": SERIES_100.tolist(),
            "options": dict(OPTIONS, prefer_rust=req.options.prefer_rust)}
    c0 = cpu_s(pid) if pid else None
    g = ghz_summary(ghz(addr, "analytics.AnalyticsEngine.Analyze", data, 1, max(2, duration // 2), "pyalg_c1"))
    c1 = cpu_s(pid) if pid else None
    cpu_us = (c1 - c0) * 1e6 / g["count"] if c0 is not None and c1 is not None and g["count"] else None
    # The gRPC floor in the same minute: native mean over the same 100 points answered without any worker.
    native = dict(data, algorithm="mean", options=dict(OPTIONS, prefer_rust=True))
    gn = ghz_summary(ghz(addr, "analytics.AnalyticsEngine.Analyze", native, 1, max(2, duration // 2), "native_c1"))
    return {"algorithm": alg, "ghz_p50_us": g["p50_us"], "ghz_p99_us": g["p99_us"],
            "native_mean_p50_us": gn["p50_us"], "engine_cpu_us_per_call": cpu_us,
            "worker_compute_p50_us": statistics.median(comp), "worker_roundtrip_p50_us": statistics.median(rt),
            "overhead_p50_us": g["p50_us"] - statistics.median(comp),
            "pyclient_e2e_p50_us": statistics.median(c[0] for c in calls),
            "pyclient_overhead_p50_us": statistics.median(per_call), "calls": len(calls)}


def sc_payload(addr, duration):
    """8 MB (10^6 float64) through a worker; throughput of engine -> worker -> engine."""
    alg, req, calls = python_calls(addr, SERIES_1E6, duration, 5)
    nbytes = SERIES_1E6.size * 8
    rt = [float(c[1].metadata.stats["worker_roundtrip_us"]) for c in calls]
    comp = [float(c[1].metadata.stats["worker_compute_us"]) for c in calls]
    e2e = [c[0] for c in calls]
    transport = [r - c for r, c in zip(rt, comp)]
    return {"algorithm": alg, "calls": len(calls), "bytes": nbytes,
            "worker_roundtrip_p50_us": statistics.median(rt), "worker_compute_p50_us": statistics.median(comp),
            "gbps_transport": nbytes / statistics.median(transport) / 1000.0,
            "gbps_roundtrip": nbytes / statistics.median(rt) / 1000.0,
            "e2e_p50_ms": statistics.median(e2e) / 1000.0,
            "gbps_e2e": nbytes / statistics.median(e2e) / 1000.0}


RF_ROWS, RF_COLS = 5000, 10
_rng = np.random.default_rng(7)
RF_X = _rng.standard_normal((RF_ROWS, RF_COLS))
RF_Y = RF_X @ _rng.standard_normal(RF_COLS) + 0.1 * _rng.standard_normal(RF_ROWS)
RF_PARAMS = {"n_estimators": "20", "max_depth": "8", "random_state": "42"}


def tree_cpu(pids):
    vals = [cpu_s(p) for p in pids]
    return sum(v for v in vals if v is not None)


def sc_rf(addr, duration, pids=()):
    """pids: the server processes (engine + workers, or the baseline) whose CPU time is summed: cores used."""
    req = request("random_forest", RF_X, RF_PARAMS, shape=[RF_ROWS, RF_COLS], target=RF_Y)
    r = check(channel_call(addr, req), "random_forest")
    c0 = tree_cpu(pids)
    out = closed_loop(addr, req.SerializeToString(), 4, duration, what="random_forest")
    if pids:
        out["server_cores_used"] = (tree_cpu(pids) - c0) / out["elapsed_s"]
        out["machine_loadavg_1m"] = os.getloadavg()[0]
    res = json.loads(r.result_json)
    out["r2_score"] = res.get("r2_score")
    out["implementation"] = r.metadata.implementation
    return out


def channel_call(addr, req):
    ch = channel(addr)
    try:
        return analyze_raw(ch)(req.SerializeToString(), timeout=300)
    finally:
        ch.close()


def batch_request():
    rng = np.random.default_rng(11)
    stats = ["mean", "std", "median", "percentile", "summary", "skewness", "kurtosis", "mode", "q1",
             "correlation"]
    reqs = []
    for i in range(1000):
        if i % 10 == 9:  # 10 % Python algorithms
            j = (i // 10) % 5
            if j in (0, 1):
                alg, data, params = "anomaly_detection", rng.standard_normal(1000), {"method": "zscore"}
            elif j in (2, 3):
                alg, data, params = "linear_regression", np.cumsum(rng.standard_normal(1000)), {}
            else:
                alg, data, params = "kmeans", rng.standard_normal(300), {"k": "3", "n_init": "1"}
        else:
            alg = stats[i % 10]
            data = rng.standard_normal(1000)
            params = {"percentile": "90"} if alg == "percentile" else {}
        reqs.append(request(alg, data, params, rid="b%04d" % i))
    return pb.BatchAnalysisRequest(batch_id="bench", requests=reqs)


_BATCH = None


def sc_batch(addr, duration):
    global _BATCH
    if _BATCH is None:
        _BATCH = batch_request().SerializeToString()
    ch = channel(addr)
    call = ch.unary_stream("/analytics.AnalyticsEngine/BatchAnalyze", request_serializer=None,
                           response_deserializer=pb.AnalysisResponse.FromString)
    times = []
    failed = []
    first_failure = None
    try:
        end = time.monotonic() + duration
        while time.monotonic() < end or len(times) < 3:
            t0 = time.perf_counter()
            got = list(call(_BATCH, timeout=300))
            times.append(time.perf_counter() - t0)
            bad = [r for r in got if not r.success]
            if len(got) != 1000:
                raise NotRun("BatchAnalyze: %d responses for 1000 requests" % len(got))
            if len({r.request_id for r in got}) != 1000:
                raise NotRun("BatchAnalyze: request ids not all distinct")
            failed.append(len(bad))
            comp = {"native_compute_ms": 0.0, "python_worker_compute_ms": 0.0, "python_roundtrip_ms": 0.0,
                    "python_items": 0}
            for x in got:
                st = x.metadata.stats
                if x.metadata.implementation == "python":
                    comp["python_items"] += 1
                    comp["python_worker_compute_ms"] += float(st.get("worker_compute_us", 0)) / 1000
                    comp["python_roundtrip_ms"] += float(st.get("worker_roundtrip_us", 0)) / 1000
                else:
                    comp["native_compute_ms"] += float(st.get("compute_us", st.get("execution_time_us", 0))) / 1000
            if bad and first_failure is None:
                first_failure = "%s %s" % (pb.ErrorCode.Name(bad[0].error_code), bad[0].error_message)
    finally:
        ch.close()
    return {"batches": len(times), "p50_ms": 1000 * statistics.median(times), "min_ms": 1000 * min(times),
            "failed_items_max": max(failed), "failed_items_total": sum(failed), "first_failure": first_failure,
            "last_batch_breakdown": comp}


def server_pids(srv):
    if isinstance(srv, Engine):
        code, h = srv.health()
        return [srv.pid] + [int(w["pid"]) for w in srv.ready_workers(h)]
    return [srv.pid]


def measure_rss(eng, h):
    out = {"engine_mb": rss_mb(eng.pid), "workers_mb": []}
    for w in eng.ready_workers(h):
        out["workers_mb"].append(rss_mb(int(w["pid"])))
    out["workers_mb"] = [x for x in out["workers_mb"] if x is not None]
    out["worker_max_mb"] = max(out["workers_mb"]) if out["workers_mb"] else None
    return out


def sc_worker_replace(eng):
    code, h = eng.health()
    ws = eng.ready_workers(h)
    if code != 200 or len(ws) < eng.workers:
        raise NotRun("engine has %d ready workers before the kill" % len(ws))
    victim = int(ws[0]["pid"])
    t0 = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    saw_gone = False
    while time.monotonic() - t0 < 30:
        code, h = eng.health()
        pids = [int(w["pid"]) for w in eng.ready_workers(h)]
        if victim not in pids:
            saw_gone = True
        if victim not in pids and len(pids) >= eng.workers:
            return {"replace_s": time.monotonic() - t0, "victim_pid": victim, "new_pids": pids,
                    "saw_victim_gone": saw_gone}
        time.sleep(0.01)
    raise NotRun("worker %d not replaced within 30 s" % victim)


# ============================================================================================ fork server (issue 11)

KMEANS_POINTS = 3000


def pss_mb(pid):
    """Proportional set size: shared pages count 1/N for each of the N processes mapping them."""
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def kmeans_request(rid):
    rng = np.random.default_rng(11)  # fixed seed: every run sends the same points
    centers = np.array([[0, 0], [6, 0], [0, 6], [6, 6]], dtype=float)
    X = centers[rng.integers(0, 4, KMEANS_POINTS)] + rng.normal(size=(KMEANS_POINTS, 2))
    return request("kmeans", X, params={"k": "4"}, shape=[KMEANS_POINTS, 2], rid=rid)


COMPUTE = []  # (end-to-end s, in-worker compute s) of every kmeans_on_each_worker call, in order


def kmeans_on_each_worker(addr, n):
    """n kmeans at once (one per idle worker: a worker serves one request at a time); seconds, sorted.
    Also appends the worker's own compute time (metadata.stats.worker_compute_us) to COMPUTE."""
    out = [None] * n
    errs = []

    def one(i):
        ch = channel(addr)
        try:
            t0 = time.perf_counter()
            resp = check(analyze_raw(ch)(kmeans_request("km-%d" % i).SerializeToString(), timeout=120), "kmeans")
            out[i] = time.perf_counter() - t0
            COMPUTE.append((out[i], float(resp.metadata.stats.get("worker_compute_us", "nan")) / 1e6))
        except Exception as e:  # reported below
            errs.append(str(e))
        finally:
            ch.close()
    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errs:
        raise NotRun(errs[0])
    return sorted(out)


def worker_memory(eng):
    """Sum of the workers' RSS and PSS, plus the fork-server template's PSS/RSS (0 in spawn mode)."""
    code, h = eng.health()
    ws = [int(w["pid"]) for w in eng.ready_workers(h)]
    start = ((h or {}).get("python") or {}).get("worker_start") or {}
    tpl = int(start.get("template_pid") or -1)
    rss = [rss_mb(p) for p in ws]
    pss = [pss_mb(p) for p in ws]
    return {"mode": start.get("mode"), "workers_rss_mb": sum(x for x in rss if x),
            "workers_pss_mb": sum(x for x in pss if x),
            "template_pss_mb": (pss_mb(tpl) or 0.0) if tpl > 0 else 0.0,
            "template_rss_mb": (rss_mb(tpl) or 0.0) if tpl > 0 else 0.0}


def sc_fork_server(mode):
    """One engine with worker_start=MODE: first kmeans on each fresh worker vs warm, kill -9 → replacement
    ready and its first kmeans, idle memory after the ML load."""
    eng = Engine(ENGINE_WORKERS, tag="engine-%s" % mode, extra_env={"ANALYTICS_WORKER_START": mode})
    try:
        eng.wait_ready(deadline_s=120)
        res = {"workers_ready_s": eng.t_ready}
        # Warm the engine's own path (JIT, gRPC, msgpack) with trivial requests that import nothing heavy on
        # the workers (_test_echo, test mode): what follows measures the worker's first ML request, not the JVM's.
        ch = channel(eng.addr)
        try:
            echo = request("_test_echo", SERIES_100, rid="warm").SerializeToString()
            for _ in range(100):
                check(analyze_raw(ch)(echo, timeout=60), "_test_echo warm-up")
        finally:
            ch.close()
        del COMPUTE[:]
        first = kmeans_on_each_worker(eng.addr, ENGINE_WORKERS)
        res["first_kmeans_s"] = first
        first_compute = [c for _, c in COMPUTE]
        del COMPUTE[:]
        warm = []
        for _ in range(5):
            warm.extend(kmeans_on_each_worker(eng.addr, ENGINE_WORKERS))
        res["warm_kmeans_s"] = statistics.median(warm)
        res["first_over_warm"] = max(first) / res["warm_kmeans_s"]
        # the same ratio on the worker's own compute time: what the worker tier costs, without the engine
        res["first_compute_s"] = first_compute
        res["warm_compute_s"] = statistics.median(c for _, c in COMPUTE)
        res["first_over_warm_compute"] = max(first_compute) / res["warm_compute_s"]
        time.sleep(1.0)  # measurement point: let the workers go idle after the load
        res["memory_after_ml"] = worker_memory(eng)
        reps, afters = [], []
        for _ in range(3):  # medians over 3 kills: single samples are at the mercy of the other tenants
            reps.append(sc_worker_replace(eng)["replace_s"])
            # the replacement is one of the two idle workers: one kmeans each, the slower is the new one's
            # (its success also marks the slot healthy, so the next kill is again a "first" failure)
            afters.append(max(kmeans_on_each_worker(eng.addr, ENGINE_WORKERS)))
        res["replace_samples_s"] = reps
        res["replace_s"] = statistics.median(reps)
        res["kmeans_after_replace_s"] = statistics.median(afters)
        res["after_replace_over_warm"] = res["kmeans_after_replace_s"] / res["warm_kmeans_s"]
        return res
    finally:
        eng.stop()


def run_fork_server():
    out = {}
    for mode in ("spawn", "fork-server"):  # same run, same machine state: the ratios compare
        log("fork_server: engine with worker_start=%s" % mode)
        out[mode] = safe(sc_fork_server, mode)
    s, f = out.get("spawn") or {}, out.get("fork-server") or {}
    try:
        out["memory_ratio"] = ((f["memory_after_ml"]["workers_pss_mb"] + f["memory_after_ml"]["template_pss_mb"])
                               / s["memory_after_ml"]["workers_rss_mb"])
    except (KeyError, TypeError, ZeroDivisionError):
        out["memory_ratio"] = None
    return out


# ============================================================================================ kernels

def run_kernels(run_idx, jmh_ready):
    data_file = os.path.join(RAW, "series-1e6.f64")
    if not os.path.exists(data_file):
        SERIES_1E6.astype("<f8").tofile(data_file)
    out = {}
    order = ["numpy", "jmh"] if run_idx % 2 == 0 else ["jmh", "numpy"]
    for side in order:
        if side == "numpy":
            jf = os.path.join(RAW, "numpy-run%d.json" % run_idx)
            subprocess.run([sys.executable, os.path.join(BENCH, "numpy_kernels.py"), "--data", data_file,
                            "--json", jf], check=True)
            with open(jf) as f:
                out["numpy"] = {k: v["us_per_op"] for k, v in json.load(f)["kernels"].items()}
        else:
            if jmh_ready is not True:
                out["jmh_error"] = jmh_ready
                continue
            jf = os.path.join(RAW, "jmh-run%d.json" % run_idx)
            with open(os.path.join(BENCH, "jmh", "target", "classpath.txt")) as f:
                cp = ":".join([os.path.join(BENCH, "jmh", "target", "classes"), f.read().strip(), ENGINE_JAR])
            r = subprocess.run(["java", "-cp", cp, "-Dbench.data=" + data_file, "org.openjdk.jmh.Main",
                                "KernelBench", "-jvmArgsAppend", "-Dbench.data=" + data_file,
                                "-rf", "json", "-rff", jf], capture_output=True, text=True)
            with open(os.path.join(RAW, "jmh-run%d.log" % run_idx), "w") as f:
                f.write(r.stdout + r.stderr)
            if r.returncode != 0 or not os.path.exists(jf):
                out["jmh_error"] = "JMH run failed (rc=%d): %s" % (r.returncode, (r.stdout + r.stderr)[-300:])
                continue
            with open(jf) as f:
                rep = json.load(f)
            out["jmh"] = {b["params"]["kernel"]: b["primaryMetric"]["score"] for b in rep}
            bad = [b["params"]["kernel"] for b in rep if b["primaryMetric"].get("scoreUnit") != "us/op"]
            if bad:
                out["jmh_error"] = "unexpected JMH unit for %s" % bad
    return out


def build_jmh():
    """True, or the reason the JMH project cannot be built."""
    if not os.path.exists(ENGINE_JAR):
        return "engine jar missing"
    r = subprocess.run(["mvn", "-q", "-B", "-f", os.path.join(BENCH, "jmh", "pom.xml"), "package",
                        "dependency:build-classpath", "-Dmdep.outputFile=target/classpath.txt"],
                       capture_output=True, text=True)
    with open(os.path.join(RAW, "jmh-build.log"), "w") as f:
        f.write(r.stdout + r.stderr)
    if r.returncode != 0:
        lines = [l for l in (r.stdout + r.stderr).splitlines() if "ERROR" in l]
        return "JMH build failed: %s" % (lines[0][:200] if lines else "see bench/results/raw/jmh-build.log")
    return True


# ============================================================================================ driver

def safe(fn, *a):
    try:
        return fn(*a)
    except NotRun as e:
        return {"error": str(e)}
    except Exception as e:  # keep the rest of the run going, but say what broke
        traceback.print_exc()
        return {"error": "%s: %s" % (type(e).__name__, str(e)[:300])}


def warm_up(addr, duration):
    """Same warm-up for both sides: a few seconds of mean load, summaries, and every Python algorithm the
    scenarios use, once on each worker (so lazy imports of sklearn/scipy are not measured)."""
    try:
        ghz(addr, "analytics.AnalyticsEngine.Analyze", MEAN_DATA, 8, max(2, duration // 3), "warmup")
        sc_summary(addr, "warmup", 1)
        small = np.random.default_rng(5).standard_normal(300)
        reqs = [request("anomaly_detection", small, {"method": "zscore"}), request("linear_regression", small),
                request("kmeans", small, {"k": "3", "n_init": "1"}),
                request("random_forest", RF_X[:200], {"n_estimators": "2"}, shape=[200, RF_COLS],
                        target=RF_Y[:200])]
        py_mean = request("mean", small)
        py_mean.options.prefer_rust = False
        reqs.append(py_mean)
        ch = channel(addr)
        call = analyze_raw(ch)
        try:
            # concurrently, twice per worker, so each worker imports what it needs
            def go(r):
                for _ in range(2):
                    call(r.SerializeToString(), timeout=120)
            ts = [threading.Thread(target=go, args=(r,)) for r in reqs for _ in range(ENGINE_WORKERS)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
        finally:
            ch.close()
    except NotRun as e:
        log("warm-up problem on %s: %s" % (addr, e))


def warm_up_native(addr, duration):
    """The native part of warm_up, for an engine without workers (the BENCH_BEFORE_JAR engine)."""
    try:
        ghz(addr, "analytics.AnalyticsEngine.Analyze", MEAN_DATA, 8, max(2, duration // 3), "warmup-before")
        sc_summary(addr, "warmup", 1)
    except NotRun as e:
        log("warm-up problem on %s: %s" % (addr, e))


def one_run(run_idx, scenarios, duration, jmh_ready):
    res = {}
    order = ["ours", "baseline"] if run_idx % 2 == 0 else ["baseline", "ours"]
    log("run %d: order %s" % (run_idx + 1, "/".join(order)))
    base = Baseline()
    res["baseline_start_s"] = base.t_ready
    eng = None
    ready_at = time.monotonic()
    try:
        if os.environ.get("BENCH_ENGINE_BUILD_ERROR"):
            raise NotRun(os.environ["BENCH_ENGINE_BUILD_ERROR"])
        if not os.path.exists(ENGINE_JAR):
            raise NotRun("engine jar not built")
        eng = Engine(ENGINE_WORKERS, tag="engine-run%d" % run_idx)
        h = eng.wait_ready()
        ready_at = time.monotonic()
        res["startup"] = {"healthy_s": eng.t_healthy, "workers_ready_s": eng.t_ready,
                          "listening_s": eng.t_listening}
        if "rss" in scenarios:
            sleep_until_idle_point(ready_at)
            code, h = eng.health()
            res["rss_idle"] = measure_rss(eng, h)
            res["rss_idle"]["baseline_mb"] = rss_mb(base.pid)
        log("engine healthy in %.2f s, workers ready in %.2f s" % (eng.t_healthy, eng.t_ready))
    except NotRun as e:
        log("engine not usable: %s" % e)
        res["engine_error"] = str(e)
        if eng:
            eng.stop()
        eng = None
    before = None
    if BEFORE_JAR and any(n in scenarios for n in BIG_SCENARIOS):
        try:
            before = Engine(0, tag="engine-before-run%d" % run_idx, jar=BEFORE_JAR, opts=BEFORE_JAVA_OPTS,
                            launcher_env=BEFORE_MALLOC_ENV)
            before.wait_ready()
            ready_at = time.monotonic()
        except NotRun as e:
            log("before engine not usable: %s" % e)
            if before is not None:
                before.stop()
            before = None
    if "rss_c16" in scenarios:
        sleep_until_idle_point(ready_at)  # as for "rss" (the latest engine started)
        IDLE_RSS.clear()
        IDLE_MAPS.clear()
        AFTER_MAPS.clear()
        for side, srv in (("ours", eng), ("baseline", base), ("before", before)):
            if srv is not None:
                IDLE_RSS[side] = rss_mb(srv.pid)
                if side != "baseline":
                    IDLE_MAPS[side] = mappings(srv.pid)
    addrs = {"ours": eng.addr if eng else None, "baseline": base.addr}
    PIDS.clear()
    PIDS.update({"ours": eng.pid if eng else None, "baseline": base.pid,
                 "before": before.pid if before else None})
    for side in order:
        if addrs[side]:
            warm_up(addrs[side], duration)

    def both(name, fn):
        if name not in scenarios:
            return
        out = {}
        for side in order:
            if addrs[side] is None:
                out[side] = {"error": res.get("engine_error", "not started")}
                continue
            log("%s: %s" % (name, side))
            out[side] = safe(fn, addrs[side], side, duration)
        res[name] = out

    both("mean_c1", sc_mean_c1)
    both("mean_c32", sc_mean_c32)
    both("summary_1e6", sc_summary)
    both("batch_1000", lambda a, s, d: sc_batch(a, d))
    big_sides = order + (["before"] if before else [])
    if before:
        warm_up_native(before.addr, duration)
    for name, fn in (("summary_1e6_c4", sc_summary_c4), ("mean_1e6", sc_mean_1e6),
                     ("summary_1e7", sc_summary_1e7), ("rss_c16", sc_rss_c16)):
        if name not in scenarios:
            continue
        out = {}
        for side in big_sides:
            if side == "baseline" and name == "summary_1e7":
                continue  # engine-side vs kernel time: an engine measurement
            a = before.addr if side == "before" else addrs[side]
            if a is None:
                out[side] = {"error": res.get("engine_error", "not started")}
                continue
            log("%s: %s" % (name, side))
            out[side] = safe(fn, a, side, duration)
        res[name] = out
    if before:
        add_jvm_split(res, "before", before.pid)
        before.stop()
    if "rf_c4" in scenarios:
        res["rf_c4"] = {}
        for side in order:
            if addrs[side] is None:
                res["rf_c4"]["ours_2w"] = {"error": res.get("engine_error")}
                continue
            log("rf_c4: %s" % side)
            res["rf_c4"]["ours_2w" if side == "ours" else "baseline"] = safe(
                sc_rf, addrs[side], duration, server_pids(eng if side == "ours" else base))
    if eng:
        if "python_overhead" in scenarios:
            log("python_overhead")
            res["python_overhead"] = safe(sc_python_overhead, eng.addr, duration, eng.pid)
            if BEFORE_JAR:  # the same scenario on the earlier engine jar (2 workers), same run, same warm-up
                log("python_overhead: before engine (BENCH_BEFORE_JAR)")
                try:
                    b2 = Engine(2, tag="engine-before-py-run%d" % run_idx, jar=BEFORE_JAR, opts=BEFORE_JAVA_OPTS,
                                launcher_env=BEFORE_MALLOC_ENV)
                    try:
                        b2.wait_ready()
                        warm_up(b2.addr, duration)
                        res["python_overhead_before"] = safe(sc_python_overhead, b2.addr, duration, b2.pid)
                    finally:
                        b2.stop()
                except NotRun as e:
                    res["python_overhead_before"] = {"error": str(e)}
        if "payload_8mb" in scenarios:
            log("payload_8mb")
            res["payload_8mb"] = safe(sc_payload, eng.addr, duration)
        if "rss" in scenarios:
            time.sleep(2.0)
            code, h = eng.health()
            res["rss_after_load"] = measure_rss(eng, h)
            res["rss_after_load"]["baseline_mb"] = rss_mb(base.pid)
        add_jvm_split(res, "ours", eng.pid)  # after the engine's last RSS reading
        if "worker_replace" in scenarios:
            log("worker_replace")
            res["worker_replace"] = safe(sc_worker_replace, eng)
        eng.stop()
    else:
        for name in ("python_overhead", "payload_8mb", "worker_replace"):
            if name in scenarios:
                res[name] = {"error": res.get("engine_error")}
    base.stop()
    if "rf_c4" in scenarios and eng is not None:
        log("rf_c4: ours with 1 worker")
        e1 = Engine(1, tag="engine1-run%d" % run_idx)
        try:
            e1.wait_ready()
            res["startup_1w"] = {"healthy_s": e1.t_healthy, "workers_ready_s": e1.t_ready,
                                 "listening_s": e1.t_listening}
            warm_up(e1.addr, duration)
            res["rf_c4"]["ours_1w"] = safe(sc_rf, e1.addr, duration, server_pids(e1))
        except NotRun as e:
            res["rf_c4"]["ours_1w"] = {"error": str(e)}
        finally:
            e1.stop()
    if "fork_server" in scenarios:
        res["fork_server"] = safe(run_fork_server)
    if "kernels" in scenarios:
        log("kernels: JMH and numpy")
        res["kernels"] = safe(run_kernels, run_idx, jmh_ready)
    return res


# ============================================================================================ report

def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def spread(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return ""
    m = statistics.median(vals)
    if len(vals) < 2 or not m:
        return ""
    return "±%.0f%%" % (100.0 * (max(vals) - min(vals)) / 2 / abs(m))


def get(d, *path):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def first_error(runs, *path):
    for r in runs:
        v = get(r, *path)
        if isinstance(v, dict) and "error" in v:
            return v["error"]
        if v is None and get(r, "engine_error"):
            return r["engine_error"]
    return None


def build_rows(runs):
    rows = []

    def fmt(v, unit, digits=1):
        if v is None:
            return None
        return ("%." + str(digits) + "f %s") % (v, unit)

    def row(name, ours_vals, base_vals, ratio_vals, ratio_label, target, met_fn, unit, digits=1,
            err_ours=None, err_base=None, base_text=None, note=None):
        o, b, r = med(ours_vals), med(base_vals), med(ratio_vals)
        ours_s = (fmt(o, unit, digits) + " " + spread(ours_vals)).strip() if o is not None else \
            "not run: %s" % (err_ours or "not selected in this run")
        if note and o is not None:
            ours_s += " (%s)" % note
        if base_text is not None:
            base_s = base_text
        else:
            base_s = (fmt(b, unit, digits) + " " + spread(base_vals)).strip() if b is not None else \
                ("not run: %s" % err_base if err_base else "—")
        ratio_s = ("%.2f× %s" % (r, ratio_label)).strip() if r is not None else "—"
        met = met_fn(o, r) if o is not None else None
        if met and note and note.startswith("FAILED"):
            met = False
        rows.append({"scenario": name, "ours": ours_s, "baseline": base_s, "ratio": ratio_s, "target": target,
                     "met": "—" if met is None else ("yes" if met else "**no**"),
                     "ours_median": o, "baseline_median": b, "ratio_median": r})

    def pair(name, key, metric, invert):
        o = [get(r, name, "ours", metric) for r in runs]
        b = [get(r, name, "baseline", metric) for r in runs]
        ratios = []
        for x, y in zip(o, b):
            if x and y:
                ratios.append(y / x if invert else x / y)
        return o, b, ratios

    o, b, rt = pair("mean_c1", None, "p50_us", True)
    row("Analyze(mean) 100 pts, c=1: p50 latency", o, b, rt, "faster", "≤ 150 µs; ≥ 3× faster",
        lambda ov, r: ov <= 150 and r is not None and r >= 3, "µs", 0,
        first_error(runs, "mean_c1", "ours"), first_error(runs, "mean_c1", "baseline"))
    o, b, rt = pair("mean_c1", None, "p99_us", True)
    row("Analyze(mean) 100 pts, c=1: p99 latency", o, b, rt, "faster", "≤ 1 ms",
        lambda ov, r: ov <= 1000, "µs", 0,
        first_error(runs, "mean_c1", "ours"), first_error(runs, "mean_c1", "baseline"))
    o, b, rt = pair("mean_c32", None, "rps", False)
    row("Analyze(mean) 100 pts, c=32: throughput", o, b, rt, "", "≥ 8× baseline",
        lambda ov, r: r is not None and r >= 8, "req/s", 0,
        first_error(runs, "mean_c32", "ours"), first_error(runs, "mean_c32", "baseline"))
    o, b, rt = pair("mean_c32", None, "server_cpu_us_per_req", True)
    row("(info) server CPU time per Analyze(mean) request at c=32", o, b, rt, "less CPU", "—",
        lambda ov, r: None, "µs", 0, first_error(runs, "mean_c32", "ours"), first_error(runs, "mean_c32", "baseline"))
    o, b, rt = pair("mean_c32", None, "client_cpu_us_per_req", True)
    row("(info) load generator (ghz) CPU time per request at c=32, same cores", o, b, [], "", "—",
        lambda ov, r: None, "µs", 0, first_error(runs, "mean_c32", "ours"), first_error(runs, "mean_c32", "baseline"))
    o, b, rt = pair("summary_1e6", None, "p50_ms", True)
    row("Analyze(summary) 10^6 pts end to end (p50)", o, b, rt, "faster", "≥ 3× faster",
        lambda ov, r: r is not None and r >= 3, "ms", 1,
        first_error(runs, "summary_1e6", "ours"), first_error(runs, "summary_1e6", "baseline"))

    # large requests (issue 13); the "before" engine (BENCH_BEFORE_JAR) against the same baseline, same run
    for side, label in (("ours", ""), ("before", "(before: BENCH_BEFORE_JAR) ")):
        if side == "before" and not any(get(r, n, "before") for r in runs for n in BIG_SCENARIOS):
            continue
        o = [get(r, "summary_1e6_c4", side, "rps") for r in runs]
        b = [get(r, "summary_1e6_c4", "baseline", "rps") for r in runs]
        rt = [x / y for x, y in zip(o, b) if x and y]
        row(label + "Analyze(summary) 10^6 pts, 4 concurrent: throughput", o, b, rt, "", "≥ 3× baseline",
            lambda ov, r: r is not None and r >= 3, "req/s", 1,
            first_error(runs, "summary_1e6_c4", side), first_error(runs, "summary_1e6_c4", "baseline"))
        o = [get(r, "mean_1e6", side, "p50_ms") for r in runs]
        b = [get(r, "mean_1e6", "baseline", "p50_ms") for r in runs]
        rt = [y / x for x, y in zip(o, b) if x and y]
        row(label + "Analyze(mean) 10^6 pts, sequential, e2e from Python (p50)", o, b, rt, "faster",
            "≥ 3× faster", lambda ov, r: r is not None and r >= 3, "ms", 1,
            first_error(runs, "mean_1e6", side), first_error(runs, "mean_1e6", "baseline"))
        # The CPU floor under those calls: sequential calls spend all their CPU, client's and server's, within
        # their wall time on `cores` cores. 3x the baseline leaves the server cores x (baseline p50 / 3) minus
        # what the client itself spends per call; negative means no server can meet it with this client.
        cc = [get(r, "mean_1e6", side, "client_cpu_ms") for r in runs]
        sc = [get(r, "mean_1e6", side, "server_cpu_ms") for r in runs]
        nc = [get(r, "mean_1e6", side, "cores") for r in runs]
        floor = [(x + y) / n for x, y, n in zip(cc, sc, nc) if x and y and n]
        room = [n * bp / 3 - x for x, bp, n in zip(cc, b, nc) if x and bp and n]
        bcc = [get(r, "mean_1e6", "baseline", "client_cpu_ms") for r in runs]
        bsc = [get(r, "mean_1e6", "baseline", "server_cpu_ms") for r in runs]
        row(label + "(info) same calls: CPU floor of one call on this machine = (client CPU + server CPU) / cores",
            floor, [(x + y) / n for x, y, n in zip(bcc, bsc, nc) if x and y and n], [], "", "—",
            lambda ov, r: None, "ms", 2, first_error(runs, "mean_1e6", side), first_error(runs, "mean_1e6", "baseline"),
            note=("client %.2f + server %.2f ms of CPU per call on %d cores; 3× the baseline's %.1f ms leaves the "
                  "server %.2f ms of CPU per call" % (med(cc), med(sc), med(nc), med(b), med(room)))
            if med(cc) and med(sc) and med(room) is not None and med(b) else None)
        o = [get(r, "summary_1e7", side, "engine_over_kernel") for r in runs]
        k = [get(r, "summary_1e7", side, "kernel_ms") for r in runs]
        c = [get(r, "summary_1e7", side, "engine_cpu_ms") for r in runs]
        e = [get(r, "summary_1e7", side, "p50_ms") for r in runs]
        es = [get(r, "summary_1e7", side, "engine_side_ms") for r in runs]
        ran = any(get(r, "summary_1e7", side, "p50_ms") for r in runs)
        row(label + "Analyze(summary) 10^7 pts (80 MB): engine-side time (decode_us + execution_time_us) / "
            "kernel time (compute_us)", o, [], [], "", "≤ 2× the kernel", lambda ov, r: ov <= 2, "×", 2,
            first_error(runs, "summary_1e7", side)
            or ("its answers carry no decode_us (an engine from before it): see the row below" if ran else None),
            base_text="n/a (engine measurement)",
            note=("engine-side %.0f ms, kernel %.0f ms" % (med(es), med(k))) if med(es) and med(k) else None)
        o = [get(r, "summary_1e7", side, "e2e_over_kernel") for r in runs]
        row(label + "(info) same call: end-to-end time (adds the client's sending and the engine's receiving "
            "of 80 MB) / kernel time", o, [], [], "", "—", lambda ov, r: None, "×", 2, first_error(runs, "summary_1e7", side),
            base_text="n/a (engine measurement)",
            note=("e2e %.0f ms, engine CPU %.0f ms per call" % (med(e), med(c))) if med(e) and med(c) else None)
        o = [get(r, "rss_c16", side, "rss_peak_mb") for r in runs]
        b = [get(r, "rss_c16", "baseline", "rss_peak_mb") for r in runs]
        row(label + "RSS peak during 16 concurrent 10^6-pt requests", o, b, [], "", "≤ 600 MiB",
            lambda ov, r: ov <= 600, "MiB", 0, first_error(runs, "rss_c16", side),
            first_error(runs, "rss_c16", "baseline"))
        o = [get(r, "rss_c16", side, "back_to_idle_s") for r in runs]
        b = [get(r, "rss_c16", "baseline", "back_to_idle_s") for r in runs]
        never = [r for r in runs if get(r, "rss_c16", side) and not get(r, "rss_c16", side, "error")
                 and get(r, "rss_c16", side, "back_to_idle_s") is None]
        after = [get(r, "rss_c16", side, "rss_after_15s_mb") for r in runs]
        row(label + "RSS back to within 10% of its idle size (after start-up) after that load",
            o if not never else [], b, [], "", "≤ 10 s", lambda ov, r: ov <= 10, "s", 1,
            ("not within 15 s: %.0f MiB after 15 s (idle: %.0f MiB)" % (
                med(after) or 0, med([get(r, "rss_c16", side, "rss_idle_mb") for r in runs]) or 0))
            if never else first_error(runs, "rss_c16", side),
            first_error(runs, "rss_c16", "baseline"))
        if never:
            rows[-1]["met"] = "**no**"
        warm = [get(r, "rss_c16", side, "rss_before_mb") for r in runs]
        o = [a - w for a, w in zip(after, warm) if a and w]
        bw = [get(r, "rss_c16", "baseline", "rss_before_mb") for r in runs]
        ba = [get(r, "rss_c16", "baseline", "rss_after_15s_mb") for r in runs]
        row(label + "(info) same load: RSS 15 s after it minus its warm idle size (its RSS after %.0f s idle "
            "just before this load, after the warm-up and the scenarios before it): what the burst itself keeps"
            % WARM_SETTLE_S,
            o, [a - w for a, w in zip(ba, bw) if a and w], [], "", "—", lambda ov, r: None, "MiB", 0,
            first_error(runs, "rss_c16", side), first_error(runs, "rss_c16", "baseline"),
            note=("warm idle %.0f MiB, start-up idle %.0f MiB" % (
                med(warm), med([get(r, "rss_c16", side, "rss_idle_mb") for r in runs]) or 0)) if med(warm) else None)
        parts = {}
        for k in ("heap_mb", "code_mb", "rest_mb"):
            parts[k] = [a - i for a, i in zip([get(r, "rss_c16", side, "split_after", k) for r in runs],
                                              [get(r, "rss_c16", side, "split_idle", k) for r in runs])
                        if a is not None and i is not None]
        total = [sum(x) for x in zip(*parts.values())]
        row(label + "(info) same load: RSS 15 s after it minus the start-up idle size, by where it sits (Java heap "
            "range, JIT code cache, the rest: class metadata, thread stacks, GC structures, glibc, libraries)",
            total, [], [], "", "—", lambda ov, r: None, "MiB", 1, first_error(runs, "rss_c16", side),
            base_text="n/a (JVM ranges)",
            note=("heap %+.1f, code %+.1f, rest %+.1f MiB; 10 %% of the idle size is %.1f MiB" % (
                med(parts["heap_mb"]), med(parts["code_mb"]), med(parts["rest_mb"]),
                0.1 * (med([get(r, "rss_c16", side, "rss_idle_mb") for r in runs]) or 0)))
            if total else None)

    # kernels: ours = JMH, baseline = numpy timeit
    kerr = next((get(r, "kernels", "jmh_error") or get(r, "kernels", "error") for r in runs
                 if get(r, "kernels", "jmh_error") or get(r, "kernels", "error")), None)
    for k in ("mean", "std", "percentile", "median", "summary"):
        o = [get(r, "kernels", "jmh", k) for r in runs]
        b = [get(r, "kernels", "numpy", k) for r in runs]
        rt = [x / y for x, y in zip(o, b) if x and y]
        if k == "summary":
            row("Java kernel summary vs numpy separate calls, 10^6", o, b, rt, "of numpy's time",
                "faster than numpy (< 1.0×)", lambda ov, r: r is not None and r < 1.0, "µs", 0, kerr)
        else:
            row("Java kernel %s vs numpy, 10^6" % k, o, b, rt, "of numpy's time", "≤ 1.5× numpy's time",
                lambda ov, r: r is not None and r <= 1.5, "µs", 0, kerr)

    o = [get(r, "python_overhead", "overhead_p50_us") for r in runs]
    row("Python path overhead: trivial Python algorithm, 100 pts, e2e p50 − worker compute", o, [], [], "",
        "≤ 250 µs p50", lambda ov, r: ov <= 250, "µs", 0, first_error(runs, "python_overhead"),
        base_text="n/a (in-process)")
    if any(r.get("python_overhead_before") for r in runs):
        o = [get(r, "python_overhead_before", "overhead_p50_us") for r in runs]
        row("(before: BENCH_BEFORE_JAR) Python path overhead, same run", o, [], [], "",
            "≤ 250 µs p50", lambda ov, r: ov <= 250, "µs", 0, first_error(runs, "python_overhead_before"),
            base_text="n/a (in-process)")
    o = [get(r, "payload_8mb", "gbps_transport") for r in runs]
    row("8 MB float64 engine → worker → engine (transport)", o, [], [], "", "≥ 1 GB/s",
        lambda ov, r: ov >= 1.0, "GB/s", 2, first_error(runs, "payload_8mb"), base_text="n/a (in-process)")

    o = [get(r, "rf_c4", "ours_2w", "rps") for r in runs]
    one = [get(r, "rf_c4", "ours_1w", "rps") for r in runs]
    b = [get(r, "rf_c4", "baseline", "rps") for r in runs]
    rt = [x / y for x, y in zip(o, one) if x and y]
    shed2 = sum(get(r, "rf_c4", "ours_2w", "shed_overloaded") or 0 for r in runs)
    shed1 = sum(get(r, "rf_c4", "ours_1w", "shed_overloaded") or 0 for r in runs)
    rf_note = ("OVERLOADED rejections, retried by the client: %d with 2 workers, %d with 1" % (shed2, shed1)
               if shed1 or shed2 else None)
    row("random_forest 5k×10, c=4: 2 workers vs 1 worker", o, one, rt, "", "≥ 1.8×",
        lambda ov, r: r is not None and r >= 1.8, "req/s", 2, first_error(runs, "rf_c4", "ours_2w"),
        first_error(runs, "rf_c4", "ours_1w"), note=rf_note,
        base_text=(("1 worker: %.2f req/s %s" % (med(one), spread(one))) if med(one) is not None
                   else "not run: %s" % first_error(runs, "rf_c4", "ours_1w")))
    rt = [x / y for x, y in zip(o, b) if x and y]
    row("random_forest 5k×10, c=4: ours (2 workers) vs baseline", o, b, rt, "", "≥ 1.8× baseline",
        lambda ov, r: r is not None and r >= 1.8, "req/s", 2, first_error(runs, "rf_c4", "ours_2w"),
        first_error(runs, "rf_c4", "baseline"))
    o = [get(r, "rf_c4", "ours_2w", "server_cores_used") for r in runs]
    one = [get(r, "rf_c4", "ours_1w", "server_cores_used") for r in runs]
    b = [get(r, "rf_c4", "baseline", "server_cores_used") for r in runs]
    row("(info) random_forest c=4: CPU cores the server got (2 workers / 1 worker; baseline)", o, b, [], "",
        "—", lambda ov, r: None, "cores", 2, first_error(runs, "rf_c4", "ours_2w"),
        first_error(runs, "rf_c4", "baseline"),
        note=("1 worker: %.2f cores" % med(one)) if med(one) is not None else None)
    o, b, rt = pair("batch_1000", None, "p50_ms", True)
    bfail = max([get(r, "batch_1000", "ours", "failed_items_max") or 0 for r in runs] + [0])
    bmsg = next((get(r, "batch_1000", "ours", "first_failure") for r in runs
                 if get(r, "batch_1000", "ours", "first_failure")), None)
    row("BatchAnalyze 1000 mixed items (p50 per batch)", o, b, rt, "faster", "≥ 3× baseline",
        lambda ov, r: r is not None and r >= 3, "ms", 0,
        first_error(runs, "batch_1000", "ours"), first_error(runs, "batch_1000", "baseline"),
        note=("FAILED items: up to %d of 1000 per batch, e.g. %s" % (bfail, (bmsg or "")[:120])) if bfail else None)

    for when, key in (("idle after start", "rss_idle"), ("idle after the load", "rss_after_load")):
        o = [get(r, key, "engine_mb") for r in runs]
        b = [get(r, key, "baseline_mb") for r in runs]
        row("RSS engine, %s" % when, o, b, [], "", "≤ 96 MB", lambda ov, r: ov <= 96, "MB", 0,
            get(runs[0], "engine_error") or "not measured")
        o = [get(r, key, "worker_max_mb") for r in runs]
        row("RSS per worker (max), %s" % when, o, [], [], "", "≤ 90 MB", lambda ov, r: ov <= 90, "MB", 0,
            get(runs[0], "engine_error") or "not measured", base_text="—")
    o = [get(r, "startup", "listening_s") for r in runs] + [get(r, "startup_1w", "listening_s") for r in runs]
    row("(info) start-up to first HTTP answer (port open, any status)", o, [], [], "", "—",
        lambda ov, r: None, "s", 2, get(runs[0], "engine_error"), base_text="—")
    o = [get(r, "startup", "healthy_s") for r in runs] + [get(r, "startup_1w", "healthy_s") for r in runs]
    b = [get(r, "baseline_start_s") for r in runs]
    row("start-up to healthy (HTTP /health 200)", o, b, [], "", "≤ 3 s", lambda ov, r: ov <= 3, "s", 2,
        get(runs[0], "engine_error"))
    o = [get(r, "startup", "workers_ready_s") for r in runs]
    row("start-up to all %d workers ready" % ENGINE_WORKERS, o, [], [], "", "≤ 5 s", lambda ov, r: ov <= 5,
        "s", 2, get(runs[0], "engine_error"), base_text="—")
    o = [get(r, "worker_replace", "replace_s") for r in runs]
    row("worker replacement after kill -9", o, [], [], "", "≤ 2 s", lambda ov, r: ov <= 2, "s", 2,
        first_error(runs, "worker_replace"), base_text="—")
    for mode in ("spawn", "fork-server"):
        o = [get(r, "fork_server", mode, "first_over_warm") for r in runs]
        row("first kmeans (3000 pts) on a fresh worker / warm, worker_start=%s" % mode, o, [], [], "", "≤ 2×",
            lambda ov, r: ov <= 2, "×", 1, first_error(runs, "fork_server", mode), base_text="—")
        o = [get(r, "fork_server", mode, "first_over_warm_compute") for r in runs]
        row("(info) same, in-worker compute only (metadata worker_compute_us), worker_start=%s" % mode, o, [], [],
            "", "—", lambda ov, r: None, "×", 1, first_error(runs, "fork_server", mode), base_text="—")
        o = [get(r, "fork_server", mode, "replace_s") for r in runs]
        row("replacement after kill -9 to ready, worker_start=%s" % mode, o, [], [], "", "≤ 0.1 s",
            lambda ov, r: ov <= 0.1, "s", 3, first_error(runs, "fork_server", mode), base_text="—")
        o = [get(r, "fork_server", mode, "after_replace_over_warm") for r in runs]
        row("next kmeans after the replacement / warm, worker_start=%s" % mode, o, [], [], "", "warm (≤ 2×)",
            lambda ov, r: ov <= 2, "×", 1, first_error(runs, "fork_server", mode), base_text="—")
    o = [get(r, "fork_server", "memory_ratio") for r in runs]
    row("idle memory after ML load: fork-server PSS (template + workers) / spawn sum of worker RSS", o, [], [], "",
        "≤ 60 %", lambda ov, r: ov <= 0.6, "", 2, first_error(runs, "fork_server", "fork-server"), base_text="—")
    return rows


def parity(runs):
    """Do ours and the baseline compute the same numbers? (summary of 10^6 points, random_forest r2)."""
    notes = []
    r = runs[0]
    a, b = get(r, "summary_1e6", "ours", "result"), get(r, "summary_1e6", "baseline", "result")
    if a and b:
        bad = [k for k in a if not (a[k] == b[k] or (isinstance(a[k], (int, float)) and isinstance(b[k], (int, float))
                                                     and abs(a[k] - b[k]) <= 1e-9 * max(1.0, abs(b[k]))))]
        notes.append("summary 10^6: %s" % ("all keys equal within 1e-9 (%s)" % ", ".join(a) if not bad
                                           else "DIFFERENT: %s" % ", ".join("%s %r vs %r" % (k, a[k], b[k])
                                                                            for k in bad)))
    a, b = get(r, "rf_c4", "ours_2w", "r2_score"), get(r, "rf_c4", "baseline", "r2_score")
    if a is not None and b is not None:
        notes.append("random_forest r2_score %.12g vs %.12g (%s)" % (a, b, "equal" if abs(a - b) <= 1e-9 else
                                                                     "DIFFERENT"))
    return "; ".join(notes) or "not compared (summary_1e6 / rf_c4 did not run on both sides)"


def write_report(runs, args, meta):
    rows = build_rows(runs)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, args.output + ".json"), "w") as f:
        json.dump({"meta": meta, "runs": runs, "table": rows}, f, indent=1, default=str)
    lines = ["# Benchmark results", "",
             "Generated by `scripts/bench.sh` at %s on `%s` (%d CPUs), git `%s`." % (
                 meta["finished"], meta["host"], meta["cpus"], meta["git"]),
             "Runs: %d (alternating which side goes first), %d s per measurement; scenarios: %s." % (
                 args.runs, args.duration, ", ".join(args.scenario)),
             "Values are medians over runs (± half the min–max spread, relative to the median); ratios are "
             "computed within each run, then the median is taken. Raw numbers: `%s.json`. " % args.output +
             "How each scenario is measured: `bench/README.md`.", "",
             "| scenario | ours | baseline | ratio | target | met? |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append("| %s | %s | %s | %s | %s | %s |" % (r["scenario"], r["ours"].replace("|", "/"),
                                                       r["baseline"].replace("|", "/"), r["ratio"], r["target"],
                                                       r["met"]))
    lines += ["", "Same results (first run): " + parity(runs)]
    algs = sorted({get(r, k, "algorithm") for r in runs for k in ("python_overhead", "payload_8mb")} - {None})
    lines += ["", "Trivial Python algorithm used for the overhead/payload rows: %s "
                  "(`_test_echo` needs the engine's test mode; else `mean` with prefer_rust=false)."
              % (", ".join(algs) or "none ran"),
              "Engine JVM flags: `%s`; its malloc environment: `%s`; %d Python workers; baseline thread pool: %d; "
              "load average at start/end: %s / %s." % (
                  " ".join(meta["engine_jvm_opts"]) or "(none)",
                  " ".join("%s=%s" % kv for kv in meta.get("engine_malloc_env", {}).items()) or "(glibc's defaults)",
                  ENGINE_WORKERS, BASELINE_THREADS, "%.1f" % meta["loadavg_start"][0], "%.1f" % meta["loadavg_end"][0]),
              "Environment: " + ", ".join("%s %s" % kv for kv in meta["versions"].items()), ""]
    if BEFORE_JAR:
        lines[-1:-1] = ["Before engine (BENCH_BEFORE_JAR): `%s`, JVM flags `%s`, %s." % (
            os.path.basename(BEFORE_JAR), BEFORE_JAVA_OPTS or "as above",
            "the same malloc environment" if BEFORE_MALLOC_ENV else "glibc's default malloc settings")]
    with open(os.path.join(RESULTS, args.output + ".md"), "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines[7:]))


def main(argv=None):
    ap = argparse.ArgumentParser(description="Engine vs baseline benchmark (use scripts/bench.sh)")
    ap.add_argument("--scenario", action="append", choices=SCENARIOS, help="repeatable; default: all")
    ap.add_argument("--duration", type=int, default=10, help="seconds per measurement (default 10)")
    ap.add_argument("--runs", type=int, default=3, help="alternating runs (default 3)")
    ap.add_argument("--output", default="latest", help="results name: bench/results/NAME.md/.json (default latest)")
    args = ap.parse_args(argv)
    if args.duration < 1 or args.runs < 1:
        ap.error("--duration and --runs must be >= 1")
    args.scenario = args.scenario or list(SCENARIOS)
    os.makedirs(RAW, exist_ok=True)
    jmh_ready = build_jmh() if "kernels" in args.scenario else None
    if jmh_ready is not True and jmh_ready is not None:
        log("JMH: %s" % jmh_ready)
    meta = {"started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "host": platform.node(), "cpus": os.cpu_count(),
            "git": subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                                  text=True).stdout.strip(),
            "loadavg_start": os.getloadavg(),
            "versions": {"python": platform.python_version(), "numpy": np.__version__,
                         "grpcio": grpc.__version__,
                         "java": subprocess.run(["java", "-version"], capture_output=True,
                                                text=True).stderr.splitlines()[0]},
            "baseline_threads": BASELINE_THREADS, "engine_jvm_opts": jvm_opts(),
            "engine_malloc_env": {k: v for k, v in malloc_env().items() if k.startswith("MALLOC_")},
            "engine_workers": ENGINE_WORKERS, "rf_params": RF_PARAMS}
    runs = []
    for i in range(args.runs):
        runs.append(one_run(i, args.scenario, args.duration, jmh_ready))
    meta["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    meta["loadavg_end"] = os.getloadavg()
    write_report(runs, args, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
