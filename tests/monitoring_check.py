#!/usr/bin/env python3
"""The monitoring kit's checks, driven by tests/monitoring.sh.

  contract  the metric-name contract: every metric, label and label value that a rule of
            deploy/prometheus/analytics-engine.rules.yml or a panel of deploy/grafana/analytics-engine.json
            names must be exported by the engine (read from a real engine's /metrics, never from a copy);
            every exported family must have HELP text; the memory alert's limit must equal the unit's
            MemoryMax. Exit 1 with one line per violation.
  traffic   a little mixed traffic (native, Python, bad input, unknown algorithm) so that counters and
            histograms exist before the contract is checked.
  e2e       against a real Prometheus that scrapes the engine with the shipped rules: every recording rule
            returns data, every dashboard expression evaluates and returns series, killing the workers
            repeatedly (by PID) makes the crash-loop alert fire, a flood makes the overload alert fire,
            and both resolve.

Needs grpcio, prometheus-client and PyYAML (tests/monitoring.sh installs them into .tools/monitoring-venv).
gRPC messages are encoded by hand from the v7 field numbers (as tests/scaleout_client.py does).
"""
import argparse
import json
import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

import grpc
import yaml
from prometheus_client.parser import text_string_to_metric_families

ANALYZE = "/analytics.AnalyticsEngine/Analyze"

# ------------------------------------------------------------------------------------------ gRPC by hand


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _ld(num, payload):
    return _varint((num << 3) | 2) + _varint(len(payload)) + payload


def encode_request(request_id, algorithm, data, params=None, timeout_ms=0):
    msg = _ld(1, request_id.encode()) + _ld(2, algorithm.encode())
    if data:
        msg += _ld(3, struct.pack("<%dd" % len(data), *data))
    for k, v in (params or {}).items():
        msg += _ld(4, _ld(1, k.encode()) + _ld(2, str(v).encode()))
    if timeout_ms:
        # AnalysisOptions (field 5): prefer_rust=1, allow_python=2, timeout_ms=3, include_metadata=4
        opts = b"\x08\x01\x10\x01" + _varint(3 << 3) + _varint(timeout_ms)
        msg += _ld(5, opts)
    return msg


def _read_varint(buf, i):
    shift = n = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, i
        shift += 7


def decode_outcome(buf):
    """AnalysisResponse -> (success, error_code number)."""
    i, success, code = 0, False, 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _read_varint(buf, i)
            if num == 2:
                success = bool(v)
            elif num == 10:
                code = v
        elif wire == 2:
            ln, i = _read_varint(buf, i)
            i += ln
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError("unexpected wire type %d" % wire)
    return success, code


class Client:
    def __init__(self, target):
        self.channel = grpc.insecure_channel(target)
        self.call = self.channel.unary_unary(ANALYZE)
        self.counts = {}
        self.lock = threading.Lock()
        self.n = 0

    def analyze(self, algorithm, data, params=None, timeout_ms=0):
        with self.lock:
            self.n += 1
            rid = "mon-%d" % self.n
        try:
            ok, code = decode_outcome(self.call(encode_request(rid, algorithm, data, params, timeout_ms), timeout=60))
            key = "success" if ok else "code%d" % code
        except grpc.RpcError as e:
            key = "rpc:" + e.code().name
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1
        return key


def mixed_traffic(client, rounds):
    for i in range(rounds):
        client.analyze("mean", [1.0, 2.0, 3.0, float(i)])
        client.analyze("summary", [float(x % 7) for x in range(50 + i)])
        client.analyze("kmeans", [1, 1.1, 0.9, 10, 10.2, 9.8], {"k": "2"})
        client.analyze("std", [1.0])                   # INVALID_ARGUMENT: too few points
        client.analyze("no_such_algorithm", [1.0])     # UNKNOWN_ALGORITHM


# ------------------------------------------------------------------------------------------ PromQL scanning

# A PromQL scanner just deep enough to list the metric names, label matchers and grouping labels of an
# expression (Prometheus' own parser is Go-only; promtool checks the syntax separately).
_TOKEN = re.compile(r'''\s+|(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)|(?P<range>\[[^\]]*\])'''
                    r'''|(?P<num>\d+(?:\.\d+)?(?:e[+-]?\d+)?)|(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)'''
                    r'''|(?P<op>=~|!~|!=|==|>=|<=|[-+*/%^(){},=<>@])''')
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"} | _GROUPING
_AGGREGATIONS = {"sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
                 "count_values", "group"}


def _tokens(expr):
    pos, out = 0, []
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m:
            raise ValueError("cannot scan PromQL at %r" % expr[pos:pos + 30])
        pos = m.end()
        kind = m.lastgroup
        if kind:
            out.append((kind, m.group(kind)))
    return out


def scan_promql(expr):
    """-> (selectors [(metric name or None, [(label, op, value)])], grouping label names)."""
    expr = re.sub(r"\$__rate_interval|\$__interval|\$__range|\$\{__rate_interval\}", "1m", expr)
    toks = _tokens(expr)
    selectors, grouping = [], set()
    i = 0
    while i < len(toks):
        kind, val = toks[i]
        nxt = toks[i + 1][1] if i + 1 < len(toks) else None
        if kind == "ident" and val in _GROUPING and nxt == "(":
            i += 2
            while toks[i][1] != ")":
                if toks[i][0] == "ident":
                    grouping.add(toks[i][1])
                i += 1
        elif kind == "ident" and (nxt == "(" or (val in _AGGREGATIONS and nxt in ("by", "without"))):
            pass  # a function or an aggregation
        elif kind == "ident" and val.lower() in _KEYWORDS:
            pass
        elif (kind == "ident") or (kind == "op" and val == "{"):
            name = val if kind == "ident" else None
            matchers = []
            if kind == "ident" and nxt == "{":
                i += 1
            if toks[i][1] == "{":
                i += 1
                while toks[i][1] != "}":
                    if toks[i][1] == ",":
                        i += 1
                        continue
                    label, op, value = toks[i][1], toks[i + 1][1], toks[i + 2][1]
                    matchers.append((label, op, value[1:-1]))
                    i += 3
            selectors.append((name, matchers))
        i += 1
    return selectors, grouping


# ------------------------------------------------------------------------------------------ contract


def load_rules(path):
    with open(path) as f:
        doc = yaml.safe_load(f)
    out = []
    for g in doc["groups"]:
        for r in g["rules"]:
            out.append(r)
    return out


def dashboard_exprs(path):
    with open(path) as f:
        dash = json.load(f)
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append(("panel '%s'" % p.get("title"), t["expr"]))
            walk(p.get("panels", []))
    walk(dash.get("panels", []))
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        if v.get("type") == "query":
            q = q.get("query") if isinstance(q, dict) else q
            m = re.match(r"label_values\((.*),\s*([A-Za-z_]\w*)\)\s*$", q or "")
            if m:
                out.append(("variable '%s'" % v["name"], m.group(1)))
    return out


def proto_outcomes(proto_path):
    text = open(proto_path).read()
    body = re.search(r"enum ErrorCode \{(.*?)\}", text, re.S).group(1)
    codes = set(re.findall(r"^\s*([A-Z_]+)\s*=", body, re.M)) - {"ERROR_CODE_UNSPECIFIED"}
    # Dispatcher: "success" for success=true, the error_code's name otherwise; streams cancelled by the client
    # are counted as CANCELLED (StreamIngest).
    return codes | {"success", "CANCELLED"}


def unit_memory_max(unit_path):
    m = re.search(r"^MemoryMax=(\d+)([KMGT]?)\s*$", open(unit_path).read(), re.M)
    return int(m.group(1)) * 1024 ** " KMGT".index(m.group(2) or " ")


def check_contract(metrics_text, rules_path, dashboard_path, proto_path, unit_path):
    errors = []
    families = list(text_string_to_metric_families(metrics_text))
    samples = {}        # sample name -> set of label names
    values = {}         # label name -> set of values seen (all metrics)
    metric_values = {}  # (sample name, label name) -> set of values seen
    for fam in families:
        if not fam.documentation.strip():
            errors.append("metric family %s has no HELP text" % fam.name)
        for s in fam.samples:
            samples.setdefault(s.name, set()).update(s.labels)
            for k, v in s.labels.items():
                values.setdefault(k, set()).add(v)
                metric_values.setdefault((s.name, k), set()).add(v)
    if not any(n.startswith("analytics_") for n in samples):
        errors.append("the /metrics text has no analytics_* metric at all")
    all_labels = set().union(*samples.values()) | {"job", "instance"}
    outcomes = proto_outcomes(proto_path)
    rules = load_rules(rules_path)
    recorded = {r["record"] for r in rules if "record" in r}
    target_labels = {"job", "instance"}  # added by Prometheus to every scraped sample
    synthetic = {"up": {"job", "instance"}, "ALERTS": None}

    exprs = [("rule '%s'" % (r.get("record") or r.get("alert")), str(r["expr"])) for r in rules]
    exprs += dashboard_exprs(dashboard_path)
    for where, expr in exprs:
        try:
            selectors, grouping = scan_promql(expr)
        except (ValueError, IndexError) as e:
            errors.append("%s: cannot read its expression (%s): %s" % (where, e, expr))
            continue
        for name, matchers in selectors:
            if name is None:
                errors.append("%s: selector without a metric name: %s" % (where, expr))
                continue
            if ":" in name:
                if name not in recorded:
                    errors.append("%s: recording rule %s is not defined in %s" % (where, name, rules_path))
                known = all_labels
            elif name in synthetic:
                known = synthetic[name] or all_labels | {"alertname", "alertstate", "severity"}
            elif name not in samples:
                errors.append("%s: metric %s is not exported by the engine" % (where, name))
                continue
            else:
                known = samples[name] | target_labels
            for label, op, value in matchers:
                if label not in known:
                    errors.append("%s: label %s is not on %s" % (where, label, name))
                    continue
                if label in target_labels or "$" in value or op not in ("=", "=~") or name in synthetic:
                    continue
                allowed = outcomes if label == "outcome" else \
                    metric_values.get((name, label), set()) if name in samples else values.get(label, set())
                alternatives = value.split("|") if op == "=~" and re.fullmatch(r"[\w|]+", value) else \
                    ([value] if op == "=" else [])
                for alt in alternatives:
                    if alt not in allowed:
                        errors.append("%s: %s=\"%s\" is not a value the engine exports (known: %s)"
                                      % (where, label, alt, ", ".join(sorted(allowed))))
        for label in sorted(grouping - all_labels - {"le"}):
            errors.append("%s: groups by label %s, which no exported metric has" % (where, label))

    mm = unit_memory_max(unit_path)
    mem_rule = next((r for r in rules if r.get("alert") == "AnalyticsEngineMemoryNearLimit"), None)
    if mem_rule is None:
        errors.append("alert AnalyticsEngineMemoryNearLimit is missing")
    elif str(mm) not in str(mem_rule["expr"]):
        errors.append("AnalyticsEngineMemoryNearLimit does not compare with MemoryMax of %s (%d bytes): %s"
                      % (unit_path, mm, mem_rule["expr"]))
    return errors, len(families), len(exprs)


# ------------------------------------------------------------------------------------------ e2e


def http_json(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read().decode())


def prom_query(prom, expr):
    d = http_json(prom + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    if d.get("status") != "success":
        raise RuntimeError("query failed: %s: %s" % (expr, d))
    return d["data"]["result"]


def await_cond(what, fn, timeout, every=0.5):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - the last one is reported on timeout
            last = e
        time.sleep(every)
    raise AssertionError("timed out after %ss waiting for %s (last: %r)" % (timeout, what, last))


def alert_states(prom):
    out = {}
    for a in http_json(prom + "/api/v1/alerts")["data"]["alerts"]:
        out.setdefault(a["labels"]["alertname"], set()).add(a["state"])
    return out


def worker_pids(engine):
    h = http_json(engine + "/health")
    return [w["pid"] for w in h["python"]["workers"] if w["state"] in ("ready", "busy") and w["pid"] > 0]


def e2e(args):
    t0 = time.monotonic()
    stamp = lambda: "%5.1fs" % (time.monotonic() - t0)  # noqa: E731
    prom, engine = args.prom, args.engine
    client = Client(args.grpc)
    fails = []

    def check(name, ok, detail=""):
        print("  %s %s %s%s" % (stamp(), "ok  " if ok else "FAIL", name, "" if ok else ": %s" % detail), flush=True)
        if not ok:
            fails.append(name)

    await_cond("Prometheus to scrape the engine (up == 1)",
               lambda: [r for r in prom_query(prom, 'up{job="analytics-engine"}') if r["value"][1] == "1"], 60)
    check("Prometheus scrapes the engine", True)

    stop = threading.Event()
    # when each alert was first seen pending, firing, and gone again after firing (seconds since t0)
    timeline = {}

    def watch_alerts():
        while not stop.is_set():
            try:
                st = alert_states(prom)
            except OSError:
                st = None
            if st is not None:
                now = round(time.monotonic() - t0, 1)
                for name, states in st.items():
                    for state in states:
                        timeline.setdefault(name, {}).setdefault(state, now)
                for name, seen in timeline.items():
                    if "firing" in seen and name not in st:
                        seen.setdefault("resolved", now)
            stop.wait(0.5)
    watcher = threading.Thread(target=watch_alerts, daemon=True)
    watcher.start()

    def steady():  # keeps every request series moving, and the ratios' denominators above 0
        while not stop.is_set():
            mixed_traffic(client, 1)
            stop.wait(0.2)
    steady_t = threading.Thread(target=steady, daemon=True)
    steady_t.start()

    # ---- crash loop: kill both workers by PID, await their replacements, three times
    killed = set()
    for rnd in range(3):
        pids = await_cond("2 ready workers", lambda: (lambda p: p if len(p) == 2 and not set(p) & killed else None)(
            worker_pids(engine)), 60, 0.1)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
            killed.add(pid)
    await_cond("2 ready workers after the kills",
               lambda: (lambda p: len(p) == 2 and not set(p) & killed)(worker_pids(engine)), 60, 0.1)
    print("  %s killed %d workers by PID (3 rounds of both)" % (stamp(), len(killed)), flush=True)

    # ---- flood: more slow Python requests than 2 workers and queue_wait_ms allow
    flood_stop = threading.Event()

    def flood():
        while not flood_stop.is_set():
            client.analyze("_test_sleep", [1.0], {"seconds": "0.5"}, timeout_ms=20000)
    flooders = [threading.Thread(target=flood, daemon=True) for _ in range(args.flood_threads)]
    for t in flooders:
        t.start()

    await_cond("AnalyticsEnginePythonWorkersCrashLooping to fire",
               lambda: "firing" in alert_states(prom).get("AnalyticsEnginePythonWorkersCrashLooping", ()), 90)
    check("AnalyticsEnginePythonWorkersCrashLooping fires after repeated worker kills", True)

    # ---- recording rules and dashboard expressions, while every kind of series exists
    subprocess.run(["jcmd", str(args.engine_pid), "GC.run"], check=False, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)  # so that the GC pause family exists in the dashboard check
    rules = http_json(prom + "/api/v1/rules")["data"]["groups"]
    bad = [(r["name"], r.get("lastError")) for g in rules for r in g["rules"] if r.get("health") != "ok"]
    check("every rule evaluates without error in Prometheus", not bad, bad)
    recorded = [r["name"] for g in rules for r in g["rules"] if r["type"] == "recording"]
    check("Prometheus loaded the recording rules", len(recorded) >= 10, recorded)
    for name in recorded:
        try:
            await_cond("data for " + name, lambda: prom_query(prom, name), 30)
            check("recording rule %s returns data" % name, True)
        except AssertionError as e:
            check("recording rule %s returns data" % name, False, e)
    nan_only = []
    for where, expr in dashboard_exprs(args.dashboard):
        q = expr.replace("$__rate_interval", "1m").replace("$instance", ".*").replace("${instance}", ".*")
        try:
            res = await_cond("series for " + where, lambda: prom_query(prom, q), 30)
            if all(r["value"][1] == "NaN" for r in res):
                # e.g. a worker's RSS before its first ping (busy workers are not pinged): asked again at the end
                nan_only.append((where, expr, q))
                print("  %s      dashboard %s: only NaN so far, asked again at the end" % (stamp(), where), flush=True)
            else:
                check("dashboard %s: %s" % (where, expr[:70]), True)
        except (AssertionError, RuntimeError) as e:
            check("dashboard %s: %s" % (where, expr), False, e)

    await_cond("AnalyticsEngineOverloaded to fire",
               lambda: "firing" in alert_states(prom).get("AnalyticsEngineOverloaded", ()), 90)
    check("AnalyticsEngineOverloaded fires during the flood", True)
    flood_stop.set()
    for t in flooders:
        t.join(30)
    print("  %s flood stopped; client outcomes so far: %s" % (stamp(), dict(sorted(client.counts.items()))), flush=True)

    def resolved():
        st = alert_states(prom)
        return not st.get("AnalyticsEnginePythonWorkersCrashLooping") and not st.get("AnalyticsEngineOverloaded")
    await_cond("both alerts to resolve", resolved, 150)
    check("both alerts resolved after the kills and the flood stopped", True)
    for where, expr, q in nan_only:
        try:
            await_cond("a number from " + where,
                       lambda: [r for r in prom_query(prom, q) if r["value"][1] != "NaN"], 60)
            check("dashboard %s: %s (a number now)" % (where, expr[:70]), True)
        except (AssertionError, RuntimeError) as e:
            check("dashboard %s: %s returns a number" % (where, expr), False, e)
    stop.set()
    steady_t.join(10)
    watcher.join(10)
    others = {k: v for k, v in alert_states(prom).items()}
    check("no other alert is firing", not any("firing" in v for v in others.values()), others)
    for name in ("AnalyticsEnginePythonWorkersCrashLooping", "AnalyticsEngineOverloaded"):
        seen = timeline.get(name, {})
        print("  %s      %s: pending at %s s, firing at %s s, resolved at %s s" % (
            stamp(), name, seen.get("pending"), seen.get("firing"), seen.get("resolved")), flush=True)
        check("%s went pending before firing (its `for`)" % name,
              "pending" in seen and "firing" in seen and seen["pending"] < seen["firing"], seen)
    others = {k: v for k, v in timeline.items()
              if k not in ("AnalyticsEnginePythonWorkersCrashLooping", "AnalyticsEngineOverloaded")}
    # AnalyticsEngineNotReady goes pending while both workers are dead at once; its `for` (2m) keeps it quiet
    print("  %s      other alerts seen: %s" % (stamp(), others or "none"), flush=True)
    check("no other alert fired during the test", not any("firing" in v for v in others.values()), others)
    print("e2e: %d checks failed; %s" % (len(fails), stamp()), flush=True)
    return 1 if fails else 0


# ------------------------------------------------------------------------------------------ main


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("contract")
    src = c.add_mutually_exclusive_group(required=True)
    src.add_argument("--metrics-url")
    src.add_argument("--metrics-file")
    c.add_argument("--rules", required=True)
    c.add_argument("--dashboard", required=True)
    c.add_argument("--proto", required=True, help="proto/analytics.proto (the ErrorCode names = outcome values)")
    c.add_argument("--unit", required=True, help="systemd/analytics-engine.service (its MemoryMax)")
    t = sub.add_parser("traffic")
    t.add_argument("--grpc", required=True)
    t.add_argument("--rounds", type=int, default=5)
    e = sub.add_parser("e2e")
    e.add_argument("--grpc", required=True)
    e.add_argument("--engine", required=True, help="http://host:port of the engine")
    e.add_argument("--engine-pid", type=int, required=True)
    e.add_argument("--prom", required=True, help="http://host:port of Prometheus")
    e.add_argument("--dashboard", required=True)
    e.add_argument("--flood-threads", type=int, default=8)
    a = ap.parse_args()

    if a.cmd == "traffic":
        cl = Client(a.grpc)
        mixed_traffic(cl, a.rounds)
        print("traffic: %s" % dict(sorted(cl.counts.items())))
        return 0 if cl.counts.get("success") else 1
    if a.cmd == "e2e":
        return e2e(a)
    if a.metrics_url:
        with urllib.request.urlopen(a.metrics_url, timeout=10) as r:
            text = r.read().decode()
    else:
        text = open(a.metrics_file).read()
    errors, nfam, nexpr = check_contract(text, a.rules, a.dashboard, a.proto, a.unit)
    for err in errors:
        print("  CONTRACT: " + err)
    print("contract: %d metric families, %d expressions (rules + dashboard): %d violations"
          % (nfam, nexpr, len(errors)))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
