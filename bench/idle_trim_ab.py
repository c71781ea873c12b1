"""What the idle trim costs the next burst: this checkout's engine against an earlier jar (BENCH_BEFORE_JAR),
both with --workers 0 and the default JVM flags, in alternating rounds. Every measurement comes after 3 s of
idleness, so this engine has trimmed (heap shrunk to its live size) before each one and has to grow the heap
again: `summary` over 10^6 points at 4 concurrent callers for 5 s (req/s and engine CPU per request), then
`mean` over 10^6 points sequentially for 3 s (p50). Add -Xlog:gc via EXTRA to count collections.
Usage: BENCH_BEFORE_JAR=/path/analytics-engine.jar [ROUNDS=5] [EXTRA="-Xlog:gc:file=gc-%p.log"] \
       bench/.venv/bin/python bench/idle_trim_ab.py   (after scripts/bench.sh has built bench/.venv and the stubs)
Each engine's log: bench/results/raw/idle-ab-{ours,before}.log (its "idle trim:" lines)."""
import os, sys, time, socket, subprocess, threading, urllib.request, statistics, re
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench", "baseline", "_gen"))
import numpy as np, grpc
import analytics_pb2 as pb
with open(os.path.join(ROOT, "scripts", "analytics-server")) as f:  # the default flags, where run.sh reads them
    OPTS = re.search(r'^default_java_opts="([^"]*)"$', f.read(), re.MULTILINE).group(1).split()
OPTS += os.environ.get("EXTRA", "").split()
JARS = {"ours": os.path.join(ROOT, "engine", "target", "analytics-engine.jar"), "before": os.environ["BENCH_BEFORE_JAR"]}
RAW = os.path.join(ROOT, "bench", "results", "raw")
os.makedirs(RAW, exist_ok=True)
def cpu(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
def rss(pid):
    for l in open("/proc/%d/status" % pid):
        if l.startswith("VmRSS:"): return int(l.split()[1]) / 1024
procs = {}
try:
    for k, jar in JARS.items():
        s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
        env = dict(os.environ, ANALYTICS_MAX_MESSAGE_MB="100")
        p = subprocess.Popen(["java"] + OPTS + ["-jar", jar, "--listen", "127.0.0.1:%d" % port, "--workers", "0"],
                             stdout=open(os.path.join(RAW, "idle-ab-%s.log" % k), "w"), stderr=subprocess.STDOUT, env=env)
        procs[k] = (p, port)
    for k, (p, port) in procs.items():
        t0 = time.time()
        while True:
            try: urllib.request.urlopen("http://127.0.0.1:%d/health" % port, timeout=1).read(); break
            except Exception:
                assert time.time() - t0 < 30; time.sleep(0.1)
    data = np.random.default_rng(1).standard_normal(1_000_000)
    reqs = {}
    for alg in ("summary", "mean"):
        r = pb.AnalysisRequest(request_id="ab", algorithm=alg); r.data.extend(data); reqs[alg] = r.SerializeToString()
    chans = {k: grpc.insecure_channel("127.0.0.1:%d" % port, options=[("grpc.max_send_message_length", 1 << 30), ("grpc.max_receive_message_length", 1 << 30)]) for k, (p, port) in procs.items()}
    calls = {k: c.unary_unary("/analytics.AnalyticsEngine/Analyze", request_serializer=None, response_deserializer=pb.AnalysisResponse.FromString) for k, c in chans.items()}
    for k in calls:  # warm both alike
        for _ in range(20): assert calls[k](reqs["summary"], timeout=60).success
    res = {k: {"c4": [], "c4cpu": [], "mean": [], "meancpu": []} for k in procs}
    for rnd in range(int(os.environ.get("ROUNDS", "5"))):
        order = list(procs) if rnd % 2 == 0 else list(procs)[::-1]
        for k in order:
            pid = procs[k][0].pid; call = calls[k]
            time.sleep(3)  # idle: ours trims here (as between scenarios/bursts)
            n = [0]; c0 = cpu(pid); end = time.time() + 5; tb = time.time()
            def w():
                while time.time() < end:
                    assert call(reqs["summary"], timeout=60).success; n[0] += 1
            ts = [threading.Thread(target=w) for _ in range(4)]; [t.start() for t in ts]; [t.join() for t in ts]
            el = time.time() - tb
            res[k]["c4"].append(n[0] / el); res[k]["c4cpu"].append((cpu(pid) - c0) * 1000 / n[0])
            time.sleep(3)
            lat = []; c0 = cpu(pid); end = time.time() + 3
            while time.time() < end:
                t = time.perf_counter(); assert call(reqs["mean"], timeout=60).success; lat.append((time.perf_counter() - t) * 1000)
            res[k]["mean"].append(statistics.median(lat)); res[k]["meancpu"].append((cpu(pid) - c0) * 1000 / len(lat))
            print("round %d %s: c4 %.1f req/s (%.1f ms CPU/req), mean p50 %.2f ms (%.1f ms CPU/req), rss %.0f" % (
                rnd, k, res[k]["c4"][-1], res[k]["c4cpu"][-1], res[k]["mean"][-1], res[k]["meancpu"][-1], rss(pid)), flush=True)
    for k in res:
        print(k, {m: round(statistics.median(v), 2) for m, v in res[k].items()})
    print("ours/before c4 per round:", [round(a / b, 2) for a, b in zip(res["ours"]["c4"], res["before"]["c4"])])
    print("before/ours mean p50 per round:", [round(b / a, 2) for a, b in zip(res["ours"]["mean"], res["before"]["mean"])])
finally:
    for p, _ in procs.values():
        p.terminate(); p.wait()
