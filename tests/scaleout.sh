#!/usr/bin/env bash
# Scale-out: three engines behind nginx (deploy/nginx/analytics-engine.conf with its ports rewritten),
# a gRPC client load through nginx, one engine SIGKILLed mid-run; prints the spread and failure figures.
# Needs engine/target/analytics-engine.jar (scripts/build.sh). Installs nginx-light (Debian) if missing,
# and grpcio into .tools/scaleout-venv. Everything it starts is stopped by PID on exit.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
. scripts/lib/tools.sh
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  cat <<'USAGE'
Usage: tests/scaleout.sh
Starts 3 engines (--workers 0) and nginx on free loopback ports, sends SCALEOUT_REQUESTS (default 3000)
Analyze calls from SCALEOUT_THREADS (default 8) client threads through nginx, SIGKILLs one engine after
a third of them, and checks: requests spread over all three, clients keep getting answers, failures only
for calls in flight on the killed engine. See docs/SCALING.md.
USAGE
  exit 0
fi
START=$SECONDS
REQUESTS="${SCALEOUT_REQUESTS:-3000}"
THREADS="${SCALEOUT_THREADS:-8}"
JAR="$ROOT/engine/target/analytics-engine.jar"
[[ -f "$JAR" ]] || { echo "scaleout: $JAR missing: run scripts/build.sh first" >&2; exit 1; }

# ---------------------------------------------------------------- nginx (Debian package)
NGINX="$(command -v nginx || true)"
[[ -z "$NGINX" && -x /usr/sbin/nginx ]] && NGINX=/usr/sbin/nginx
if [[ -z "$NGINX" ]]; then
  if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
    echo "scaleout: nginx is not installed and cannot be installed here (needs root and apt-get):" \
         "apt-get install nginx-light" >&2
    exit 1
  fi
  echo "installing nginx-light from the Debian packages ..."
  made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then # keep the package from starting the system service
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=1
  fi
  ok=0
  apt-get update -qq >/dev/null 2>&1 || true
  for pkg in nginx-light nginx; do
    if DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null 2>&1; then ok=1; break; fi
  done
  (( made_policy )) && rm -f /usr/sbin/policy-rc.d
  NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
  if (( ! ok )) || [[ ! -x "$NGINX" ]]; then
    echo "scaleout: could not install nginx (apt-get install nginx-light / nginx failed)" >&2
    exit 1
  fi
fi
echo "nginx: $("$NGINX" -v 2>&1)"

# ---------------------------------------------------------------- Python client (grpcio only)
VENV="$ROOT/.tools/scaleout-venv"
if ! "$VENV/bin/python" -c 'import grpc' 2>/dev/null; then
  echo "creating $VENV with grpcio ..."
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check 'grpcio>=1.60,<2' || {
    echo "scaleout: pip install grpcio failed" >&2; exit 1; }
fi
ensure_grpcurl

# ---------------------------------------------------------------- processes
WORK="$(mktemp -d)"
chmod 755 "$WORK"
ENGINE_PIDS=()
NGINX_PID=""
cleanup() {
  local p
  for p in "${ENGINE_PIDS[@]}" $NGINX_PID; do
    if kill -0 "$p" 2>/dev/null; then kill -TERM "$p" 2>/dev/null || true; fi
  done
  for p in "${ENGINE_PIDS[@]}" $NGINX_PID; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

fails=0
check() { # check NAME CONDITION-RESULT(0/1) DETAIL
  if [[ "$2" == 0 ]]; then echo "  ok   $1"; else echo "  FAIL $1: $3"; fails=$((fails+1)); fi
}

declare -A seen=()
pick_port() { local p; while :; do p=$(free_port); [[ -z "${seen[$p]:-}" ]] && { seen[$p]=1; echo "$p"; return; }; done; }
P=("$(pick_port)" "$(pick_port)" "$(pick_port)")
NG_GRPC=$(pick_port)
NG_HTTP=$(pick_port)

for i in 0 1 2; do
  java -Xmx256m -jar "$JAR" --listen "127.0.0.1:${P[$i]}" --workers 0 >"$WORK/engine$i.log" 2>&1 &
  ENGINE_PIDS+=("$!")
done
for i in 0 1 2; do
  if ! wait_healthy "http://127.0.0.1:${P[$i]}/health" 90; then cat "$WORK/engine$i.log"; exit 1; fi
done
echo "engines: ${P[0]} (pid ${ENGINE_PIDS[0]}), ${P[1]} (pid ${ENGINE_PIDS[1]}), ${P[2]} (pid ${ENGINE_PIDS[2]})"

NG="$WORK/nginx"
mkdir -p "$NG/logs" "$NG/tmp"
chmod 777 "$NG/tmp"
sed -e "s/127\.0\.0\.1:50051/127.0.0.1:${P[0]}/g" -e "s/127\.0\.0\.1:50052/127.0.0.1:${P[1]}/g" \
    -e "s/127\.0\.0\.1:50053/127.0.0.1:${P[2]}/g" \
    -e "s/listen 127\.0\.0\.1:50050 http2;/listen 127.0.0.1:$NG_GRPC http2;/" \
    -e "s/listen 127\.0\.0\.1:50080;/listen 127.0.0.1:$NG_HTTP;/" \
    -e "s#/var/log/nginx/analytics-engine.access.log#$NG/logs/access.log#" \
    deploy/nginx/analytics-engine.conf >"$NG/analytics-engine.conf"
if grep -nE '5005[0-3]|50080|/var/log' "$NG/analytics-engine.conf" | grep -v '^\s*[0-9]*:\s*#'; then
  echo "scaleout: could not rewrite every address of deploy/nginx/analytics-engine.conf (lines above)" >&2
  exit 1
fi
cat >"$NG/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $NG/nginx.pid;
error_log $NG/logs/error.log warn;
events { worker_connections 1024; }
http {
    client_body_temp_path $NG/tmp/body;
    proxy_temp_path $NG/tmp/proxy;
    fastcgi_temp_path $NG/tmp/fastcgi;
    uwsgi_temp_path $NG/tmp/uwsgi;
    scgi_temp_path $NG/tmp/scgi;
    include $NG/analytics-engine.conf;
}
EOF
"$NGINX" -t -q -p "$NG" -c "$NG/nginx.conf" || { echo "scaleout: nginx -t rejected the config" >&2; exit 1; }
"$NGINX" -p "$NG" -c "$NG/nginx.conf" &
NGINX_PID=$!
wait_healthy "http://127.0.0.1:$NG_HTTP/health" 20 || { cat "$NG/logs/error.log"; exit 1; }
echo "nginx pid $NGINX_PID: gRPC (h2c) on 127.0.0.1:$NG_GRPC, HTTP/1.1 on 127.0.0.1:$NG_HTTP"

# ---------------------------------------------------------------- through nginx
h=$(curl -fsS -D - "http://127.0.0.1:$NG_HTTP/health")
check "GET /health via nginx (HTTP/1.1)" "$([[ "$h" == *'"status":"ok"'* && "$h" == *X-Upstream* ]]; echo $?)" "$h"
h=$(curl -fsS --http2-prior-knowledge "http://127.0.0.1:$NG_GRPC/health" || true)
check "GET /health via nginx on the gRPC port (h2c)" "$([[ "$h" == *'"status":"ok"'* ]]; echo $?)" "$h"
m=$(curl -fsS "http://127.0.0.1:$NG_HTTP/metrics" || true)
check "GET /metrics via nginx" "$([[ "$m" == *analytics_requests* || "$m" == *jvm_memory_used_bytes* ]]; echo $?)" "${m:0:200}"
out=$(grpcurl -plaintext -d '{"request_id":"n1","algorithm":"mean","data":[1,2,3,4,5]}' "127.0.0.1:$NG_GRPC" analytics.AnalyticsEngine/Analyze 2>&1 || true)
check "grpcurl Analyze via nginx" "$([[ "$out" == *'"result_json": "3.0"'* ]]; echo $?)" "$out"
out=$(printf '%s\n' '{"algorithm":"summary","data":[1,2]}' '{"data":[3,4,5]}' | grpcurl -plaintext -d @ "127.0.0.1:$NG_GRPC" analytics.AnalyticsEngine/AnalyzeStream 2>&1 || true)
check "grpcurl AnalyzeStream via nginx" "$([[ "$out" == *'\"count\":5'* ]]; echo $?)" "$out"

# ---------------------------------------------------------------- load, and a crash mid-run
KILL_AFTER=$((REQUESTS / 3))
echo "load: $REQUESTS Analyze(summary of 10000 points) calls, $THREADS threads, one channel to nginx;" \
     "SIGKILL engine ${P[1]} (pid ${ENGINE_PIDS[1]}) after $KILL_AFTER answers"
res=$("$VENV/bin/python" tests/scaleout_client.py --target "127.0.0.1:$NG_GRPC" --requests "$REQUESTS" \
      --threads "$THREADS" --points 10000 --kill-pid "${ENGINE_PIDS[1]}" --kill-after "$KILL_AFTER")
echo "client: $res"
wait "${ENGINE_PIDS[1]}" 2>/dev/null || true
jget() { "$VENV/bin/python" -c 'import json,sys; v=json.loads(sys.argv[1]); print(eval(sys.argv[2], {}, {"r": v}))' "$res" "$1"; }

# spread: nginx access log (every call, including those on the killed engine) and the survivors' /metrics
declare -A served=()
for i in 0 1 2; do
  served[$i]=$(grep -c "\"POST /analytics.AnalyticsEngine/Analyze HTTP/2.0\" 200 upstream=127.0.0.1:${P[$i]} upstream_status=200 grpc_status=0" "$NG/logs/access.log" || true)
done
retried=$(grep '/analytics.AnalyticsEngine/Analyze' "$NG/logs/access.log" | grep -c 'upstream=[^ ]*, ' || true)
failed_log=$(grep '/analytics.AnalyticsEngine/Analyze' "$NG/logs/access.log" | grep -vc 'grpc_status=0' || true)
metric() { curl -fsS "http://127.0.0.1:$1/metrics" | awk '/^analytics_requests_total\{.*algorithm="summary".*outcome="success"/ {s+=$NF} END {printf "%d", s}'; }
m0=$(metric "${P[0]}"); m2=$(metric "${P[2]}")
echo
echo "spread (nginx access log, successful calls by engine): ${P[0]}: ${served[0]}, ${P[1]} (killed): ${served[1]}, ${P[2]}: ${served[2]}"
echo "engine /metrics analytics_requests_total{summary,success}: ${P[0]}: $m0, ${P[2]}: $m2 (the killed engine cannot be scraped)"
echo "calls nginx passed to a second engine after a failed one: $retried; calls nginx answered with an error: $failed_log"
echo "client: ok $(jget 'r["ok"]') / $(jget 'r["requests"]'), failed $(jget 'r["failed"]') $(jget 'r["errors_by_code"]')," \
     "in flight at the kill $(jget 'r["in_flight_at_kill"]'), after the kill: $(jget 'r["after_kill_ok"]') ok /" \
     "$(jget 'r["after_kill_failed"]') failed (the last failed call started $(jget 'r["latest_failed_call_start_after_kill_s"]') s after the kill)," \
     "$(jget 'r["rps"]') calls/s"
echo "failure samples: $(jget 'r["error_samples"]')"
echo "nginx log of the calls that did not succeed on their first engine:"
grep '/analytics.AnalyticsEngine/Analyze' "$NG/logs/access.log" | grep -v 'upstream_status=200 grpc_status=0' | sed 's/^/    /' | head -20 || true
grep -E '\[(error|crit)\]' "$NG/logs/error.log" | sed -E 's/^[0-9/: ]+//; s/, client.*request: / request: /' | sort | uniq -c | sed 's/^/    /' | head -10 || true

ok=$(jget 'r["ok"]'); failed=$(jget 'r["failed"]'); wrong=$(jget 'r["wrong_results"]')
after_ok=$(jget 'r["after_kill_ok"]'); inflight=$(jget 'r["in_flight_at_kill"]')
unavailable_only=$(jget 'int(set(r["errors_by_code"]) <= {"UNAVAILABLE"})')
check "every engine served calls before the kill" "$( (( served[0] > 0 && served[1] > 0 && served[2] > 0 )); echo $?)" "${served[*]}"
share_ok=$( (( served[0] * 5 >= REQUESTS / 3 && served[2] * 5 >= REQUESTS / 3 )); echo $?)
check "the survivors each served a fair share (>= 1/15 of all calls)" "$share_ok" "${served[*]}"
check "engine /metrics agree with the nginx log" "$( (( m0 >= served[0] && m2 >= served[2] )); echo $?)" "metrics $m0 $m2 vs log ${served[0]} ${served[2]}"
check "clients kept getting answers after the kill" "$( (( after_ok >= REQUESTS - KILL_AFTER - THREADS * 2 )); echo $?)" "after-kill ok $after_ok"
# Failures: the calls in flight on the killed engine, plus any nginx wrote to its cached connection to
# that engine in the instant before it saw the reset. None may start later than 1 s after the kill.
late=$(jget '0 if r["latest_failed_call_start_after_kill_s"] is None else int(r["latest_failed_call_start_after_kill_s"] > 1.0 or any(f["started_after_kill_s"] is None for f in r["failures"]))')
check "failures only around the kill (<= 2 x threads, none started > 1 s after it)" "$( (( failed <= 2 * THREADS && late == 0 )); echo $?)" "failed $failed, failures: $(jget 'r["failures"]')"
check "failures are UNAVAILABLE (retryable), no wrong results" "$( (( unavailable_only == 1 && wrong == 0 )); echo $?)" "$(jget 'r["errors_by_code"]') wrong=$wrong"
check "no further calls reached the killed engine" "$(grep -q "upstream=127.0.0.1:${P[1]} upstream_status=200" <(tail -n $((REQUESTS / 3)) "$NG/logs/access.log"); [[ $? != 0 ]]; echo $?)" "late calls served by the killed engine"
# ---------------------------------------------------------------- a graceful stop (rolling restart)
R2=$((REQUESTS / 3))
echo
echo "load 2: $R2 calls; SIGTERM engine ${P[0]} (pid ${ENGINE_PIDS[0]}) after $((R2 / 3)) answers (graceful stop, as systemctl stop)"
res=$("$VENV/bin/python" tests/scaleout_client.py --target "127.0.0.1:$NG_GRPC" --requests "$R2" \
      --threads "$THREADS" --points 10000 --kill-pid "${ENGINE_PIDS[0]}" --kill-signal TERM --kill-after $((R2 / 3)))
rc=0; wait "${ENGINE_PIDS[0]}" || rc=$?
echo "client: ok $(jget 'r["ok"]') / $(jget 'r["requests"]'), failed $(jget 'r["failed"]') $(jget 'r["errors_by_code"]'), after the stop: $(jget 'r["after_kill_ok"]') ok; engine exit code $rc"
check "graceful stop: the engine exits 0" "$( (( rc == 0 )); echo $?)" "rc=$rc"
check "graceful stop: no call fails" "$( (( $(jget 'r["failed"]') == 0 )); echo $?)" "$(jget 'r["failures"]')"

h=$(curl -fsS "http://127.0.0.1:$NG_HTTP/health" || true)
check "GET /health via nginx still ok with two engines down" "$([[ "$h" == *'"status":"ok"'* ]]; echo $?)" "$h"

echo "scaleout: $(( SECONDS - START )) s"
if (( fails )); then
  echo "scaleout: $fails check(s) failed; nginx error log:"; tail -20 "$NG/logs/error.log"
  exit 1
fi
echo "scaleout: all checks passed"
