#!/usr/bin/env bash
# The monitoring kit (deploy/prometheus, deploy/grafana) proven against real components:
#   1. the metric-name contract against a real engine's /metrics (2 real workers, after traffic), and proof
#      that the contract check fails on a renamed metric, label or value and on a family without HELP;
#   2. promtool check config / check rules / test rules (unit tests of every alert);
#   3. a real Prometheus with the shipped rules scraping that engine: recording rules and dashboard
#      expressions return data, worker kills fire the crash-loop alert, a flood fires the overload alert,
#      both resolve.
# Prometheus comes from Debian's `prometheus` package, installed here if missing (root + apt-get). If it
# cannot be had, parts 2-3 are SKIPPED loudly (exit 77) after part 1 passed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
. scripts/lib/tools.sh
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  cat <<'USAGE'
Usage: tests/monitoring.sh
Starts an engine (2 Python workers, test mode, queue_wait_ms=200) on a free port and checks the
monitoring kit: the metric-name contract against its /metrics (tests/monitoring_check.py contract),
promtool check/test of deploy/prometheus (unit tests: deploy/prometheus/tests/), then a real Prometheus
on a free port (1s scrape and evaluation intervals, the shipped rules unchanged) while the workers are
killed by PID three times and a flood of slow requests overloads the pool. ~2 minutes.
Needs engine/target/analytics-engine.jar and py-worker/.venv (scripts/build.sh). Installs prometheus
(Debian package) if missing, and grpcio, prometheus-client, PyYAML into .tools/monitoring-venv.
Exit 77 (SKIPPED) only when Prometheus cannot be installed; everything it starts is stopped by PID.
USAGE
  exit 0
fi
START=$SECONDS
JAR="$ROOT/engine/target/analytics-engine.jar"
PY="${ANALYTICS_PYTHON:-$ROOT/py-worker/.venv/bin/python}"
[[ -f "$JAR" ]] || { echo "monitoring: $JAR missing: run scripts/build.sh first" >&2; exit 1; }
[[ -x "$PY" ]] || { echo "monitoring: no worker Python at $PY: run scripts/build.sh first" >&2; exit 1; }
RULES=deploy/prometheus/analytics-engine.rules.yml
DASH=deploy/grafana/analytics-engine.json

# ---------------------------------------------------------------- Python client tools
VENV="$ROOT/.tools/monitoring-venv"
if ! "$VENV/bin/python" -c 'import grpc, prometheus_client, yaml' 2>/dev/null; then
  echo "creating $VENV (grpcio, prometheus-client, PyYAML) ..."
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check 'grpcio>=1.60,<2' 'prometheus-client>=0.17,<1' 'PyYAML>=6,<7' || {
    echo "monitoring: pip install failed" >&2; exit 1; }
fi
CHECK=("$VENV/bin/python" tests/monitoring_check.py)

# ---------------------------------------------------------------- Prometheus (Debian package)
PROM_SKIP=""
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    echo "installing prometheus from the Debian packages ..."
    made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then # keep the package from starting the system service
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=1
    fi
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 \
      || PROM_SKIP="apt-get install prometheus failed"
    (( made_policy )) && rm -f /usr/sbin/policy-rc.d
  else
    PROM_SKIP="prometheus/promtool not installed and this is not root with apt-get (apt-get install prometheus)"
  fi
  if [[ -z "$PROM_SKIP" ]] && ! command -v prometheus >/dev/null; then PROM_SKIP="prometheus not on PATH after install"; fi
fi
[[ -z "$PROM_SKIP" ]] && echo "prometheus: $(prometheus --version 2>&1 | head -1)"

# ---------------------------------------------------------------- processes
WORK="$(mktemp -d -t analytics-monitoring.XXXXXX)"
ENGINE_PID=""
PROM_PID=""
cleanup() {
  local p
  for p in $PROM_PID $ENGINE_PID; do
    if kill -0 "$p" 2>/dev/null; then kill -TERM "$p" 2>/dev/null || true; fi
  done
  for p in $PROM_PID $ENGINE_PID; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
keep_logs() {
  local keep; keep="$(mktemp -d -t analytics-monitoring-failed.XXXXXX)"
  cp "$WORK"/*.log "$keep/" 2>/dev/null || true
  echo "monitoring: logs kept in $keep"
}

fails=0
check() { # check NAME RC DETAIL
  if [[ "$2" == 0 ]]; then echo "  ok   $1"; else echo "  FAIL $1${3:+: $3}"; fails=$((fails+1)); fi
}

PORT=$(free_port)
ANALYTICS_PYTHON="$PY" ANALYTICS_WORKERS=2 ANALYTICS_TEST_MODE=true ANALYTICS_QUEUE_WAIT_MS=200 \
  java -Xmx256m -jar "$JAR" --listen "127.0.0.1:$PORT" >"$WORK/engine.log" 2>&1 &
ENGINE_PID=$!
if ! wait_healthy "http://127.0.0.1:$PORT/health" 90; then tail -50 "$WORK/engine.log"; exit 1; fi
echo "engine pid $ENGINE_PID on 127.0.0.1:$PORT (2 workers)"

# ---------------------------------------------------------------- 1. the metric-name contract
echo "== metric-name contract (rules + dashboard vs the engine's real /metrics)"
"${CHECK[@]}" traffic --grpc "127.0.0.1:$PORT" --rounds 5
curl -fsS "http://127.0.0.1:$PORT/metrics" >"$WORK/metrics.txt"
contract() { "${CHECK[@]}" contract --metrics-file "$1" --rules "$RULES" --dashboard "$DASH" \
               --proto proto/analytics.proto --unit systemd/analytics-engine.service; }
rc=0; contract "$WORK/metrics.txt" || rc=$?
check "every metric, label and value named by the rules and the dashboard is exported, with HELP" "$rc"
# The check itself must fail when the engine drifts: the real text, mutated the way a refactoring would.
mutation() { # mutation NAME SED-EXPR EXPECTED-MESSAGE
  sed -e "$2" "$WORK/metrics.txt" >"$WORK/mutated.txt"
  local out rc=0
  out=$(contract "$WORK/mutated.txt") || rc=$?
  check "contract check fails when $1" "$( (( rc == 1 )) && [[ "$out" == *"$3"* ]]; echo $?)" "exit $rc, output: $out"
}
mutation "a metric is renamed" 's/analytics_python_worker_crashes_total/analytics_python_worker_exits_total/g' \
  "metric analytics_python_worker_crashes_total is not exported by the engine"
mutation "a label is renamed" 's/implementation=/impl=/g' "groups by label implementation, which no exported metric has"
mutation "a label value is renamed" 's/state="busy"/state="working"/' 'state="busy" is not a value the engine exports'
mutation "a family loses its HELP text" 's/^# HELP analytics_requests_inflight .*/# HELP analytics_requests_inflight /' \
  "metric family analytics_requests_inflight has no HELP text"

if [[ -n "$PROM_SKIP" ]]; then
  echo
  echo "################################################################################################"
  echo "## SKIPPED: promtool rule tests and the end-to-end test with a real Prometheus:"
  echo "##   $PROM_SKIP"
  echo "################################################################################################"
  (( fails )) && { echo "monitoring: $fails check(s) FAILED"; exit 1; }
  exit 77
fi

# ---------------------------------------------------------------- 2. promtool
echo "== promtool"
for f in deploy/prometheus/prometheus.yml deploy/prometheus/prometheus-scaleout.yml; do
  out=$(promtool check config "$f" 2>&1) && rc=0 || rc=$?
  check "promtool check config $f" "$rc" "$out"
done
out=$(promtool check rules "$RULES" 2>&1) && rc=0 || rc=$?
check "promtool check rules $RULES" "$rc" "$out"
out=$(promtool test rules deploy/prometheus/tests/analytics-engine.test.yml 2>&1) && rc=0 || rc=$?
check "promtool test rules (every alert firing and not firing)" "$rc" "$out"
# every alert of the rules file has a unit test
missing=$("$VENV/bin/python" - "$RULES" deploy/prometheus/tests/analytics-engine.test.yml <<'PY'
import sys, yaml
alerts = {r["alert"] for g in yaml.safe_load(open(sys.argv[1]))["groups"] for r in g["rules"] if "alert" in r}
tests = yaml.safe_load(open(sys.argv[2]))["tests"]
fired = {t["alertname"] for c in tests for t in c.get("alert_rule_test", []) if t.get("exp_alerts")}
quiet = {t["alertname"] for c in tests for t in c.get("alert_rule_test", []) if not t.get("exp_alerts")}
print(" ".join(sorted((alerts - fired) | (alerts - quiet))))
PY
)
check "every alert has a firing and a not-firing unit test" "$([[ -z "$missing" ]]; echo $?)" "missing: $missing"

# ---------------------------------------------------------------- 3. a real Prometheus
echo "== Prometheus end to end (the shipped rules; 1s scrape/evaluation in this test's config only)"
PROM_PORT=$(free_port)
cat >"$WORK/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $ROOT/$RULES
scrape_configs:
  - job_name: analytics-engine
    static_configs:
      - targets: ["127.0.0.1:$PORT"]
EOF
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
  --web.listen-address="127.0.0.1:$PROM_PORT" >"$WORK/prometheus.log" 2>&1 &
PROM_PID=$!
if ! wait_healthy "http://127.0.0.1:$PROM_PORT/-/ready" 60; then tail -30 "$WORK/prometheus.log"; exit 1; fi
echo "prometheus pid $PROM_PID on 127.0.0.1:$PROM_PORT"
E2E_START=$SECONDS
rc=0
"${CHECK[@]}" e2e --grpc "127.0.0.1:$PORT" --engine "http://127.0.0.1:$PORT" --engine-pid "$ENGINE_PID" \
  --prom "http://127.0.0.1:$PROM_PORT" --dashboard "$DASH" || rc=$?
check "end to end with a real Prometheus ($((SECONDS - E2E_START)) s)" "$rc"

echo
echo "monitoring: $fails failed; wall time $((SECONDS - START)) s"
if (( fails )); then keep_logs; exit 1; fi
