#!/usr/bin/env bash
# End-to-end: the built engine as a real process, driven by grpcurl and curl exactly like the README
# examples (on a free port instead of 50051). Needs ./scripts/build.sh first (scripts/test.sh does it).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
. scripts/lib/tools.sh
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  echo "Usage: tests/e2e.sh   — runs the README's grpcurl/curl examples against a freshly started engine"; exit 0
fi
ensure_grpcurl
PORT=$(free_port)
ADDR="127.0.0.1:$PORT"
WORK=$(mktemp -d)
SOCK="$WORK/engine.sock"
LOG="$WORK/engine.log"
ENGINE_PID=""
cleanup() {
  if [[ -n "$ENGINE_PID" ]] && kill -0 "$ENGINE_PID" 2>/dev/null; then kill -TERM "$ENGINE_PID"; wait "$ENGINE_PID" || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
fails=0
check() { # check NAME EXPECTED-SUBSTRING OUTPUT
  if [[ "$3" == *"$2"* ]]; then echo "  ok   $1"; else echo "  FAIL $1: expected '$2' in:"; echo "$3" | head -20; fails=$((fails+1)); fi
}

WORKERS="${E2E_WORKERS:-1}"
# In its own process group (setsid execs java: same pid), so the stop below can signal the engine, its
# fork-server template and its workers at once, as systemd's KillMode=control-group would.
ANALYTICS_TEST_MODE=$(( WORKERS > 0 ? 1 : 0 )) ANALYTICS_PYTHON="$ROOT/py-worker/.venv/bin/python" setsid java -jar engine/target/analytics-engine.jar \
  --listen "$ADDR" --socket "$SOCK" --workers "$WORKERS" >"$LOG" 2>&1 &
ENGINE_PID=$!
if ! wait_healthy "http://$ADDR/health" 60; then cat "$LOG"; exit 1; fi
echo "engine pid $ENGINE_PID on $ADDR (workers: $WORKERS)"

check "grpcurl list" "analytics.AnalyticsEngine" "$(grpcurl -plaintext "$ADDR" list)"
check "HealthCheck" '"healthy": true' "$(grpcurl -plaintext "$ADDR" analytics.AnalyticsEngine/HealthCheck)"
check "grpc.health.v1" "SERVING" "$(grpcurl -plaintext "$ADDR" grpc.health.v1.Health/Check)"
check "GetSupportedAlgorithms" '"name": "kmeans"' "$(grpcurl -plaintext "$ADDR" analytics.AnalyticsEngine/GetSupportedAlgorithms)"
out=$(grpcurl -plaintext -d '{"request_id":"r1","algorithm":"mean","data":[1,2,3,4,5],"options":{"prefer_rust":true,"allow_python":true,"timeout_ms":30000,"include_metadata":true}}' "$ADDR" analytics.AnalyticsEngine/Analyze)
check "Analyze mean" '"result_json": "3.0"' "$out"
check "Analyze mean native" '"implementation": "native"' "$out"
out=$(grpcurl -plaintext -d '{"request_id":"r2","algorithm":"summary","data":[2,4,4,4,5,5,7,9]}' "$ADDR" analytics.AnalyticsEngine/Analyze)
check "Analyze summary" '\"q75\"' "$out"
out=$(grpcurl -plaintext -d '{"request_id":"r3","algorithm":"percentile","data":[1,2,3,4],"params":{"percentile":"90"}}' "$ADDR" analytics.AnalyticsEngine/Analyze)
check "Analyze percentile" '"result_json": "3.7"' "$out"
out=$(grpcurl -plaintext -d '{"request_id":"bad","algorithm":"skewness","data":[1,2]}' "$ADDR" analytics.AnalyticsEngine/Analyze)
check "too few points" '"error_code": "INVALID_ARGUMENT"' "$out"
check "too few points message" 'needs at least 3 data points' "$out"
out=$(grpcurl -plaintext -d '{"batch_id":"b1","requests":[{"request_id":"a","algorithm":"max","data":[1,9,3]},{"request_id":"b","algorithm":"nope","data":[1]}]}' "$ADDR" analytics.AnalyticsEngine/BatchAnalyze)
check "BatchAnalyze ok item" '"result_json": "9.0"' "$out"
check "BatchAnalyze failing item" '"error_code": "UNKNOWN_ALGORITHM"' "$out"
out=$(printf '%s\n' '{"request_id":"s1","algorithm":"mean","data":[1,2]}' '{"data":[3,4]}' | grpcurl -plaintext -d @ "$ADDR" analytics.AnalyticsEngine/AnalyzeStream)
check "AnalyzeStream" '"result_json": "2.5"' "$out"
if (( WORKERS > 0 )); then
  out=$(grpcurl -plaintext -d '{"request_id":"k1","algorithm":"kmeans","data":[1,1.1,0.9,10,10.2,9.8],"params":{"k":"2"}}' "$ADDR" analytics.AnalyticsEngine/Analyze)
  check "Analyze kmeans (python)" '"implementation": "python"' "$out"
  check "kmeans result keys" 'n_clusters' "$out"
  out=$(grpcurl -plaintext -d '{"request_id":"k2","algorithm":"kmeans","data":[1,2,3,4,5,6],"shape":[3,2],"params":{"k":"2"}}' "$ADDR" analytics.AnalyticsEngine/Analyze)
  check "Analyze kmeans matrix" '"success": true' "$out"
  # values py-worker/README.md documents, validated by the engine from the worker package's catalogue
  out=$(grpcurl -plaintext -d '{"algorithm":"anomaly_detection","data":[1,2,1,2,1,2,50,1,2,1],"params":{"threshold":"auto"}}' "$ADDR" analytics.AnalyticsEngine/Analyze)
  check "anomaly_detection threshold=auto" '"success": true' "$out"
  out=$(grpcurl -plaintext -d '{"algorithm":"random_forest","data":[1,2,3,4,5,6,7,8,9,10],"params":{"max_depth":"none","n_estimators":"5"}}' "$ADDR" analytics.AnalyticsEngine/Analyze)
  check "random_forest max_depth=none" '"success": true' "$out"
  out=$(grpcurl -plaintext -d '{"algorithm":"seasonal_decompose","data":[1,5,9,5,1,5,9,5,1,5,9,5,1,5,9,5],"params":{"period":"auto"}}' "$ADDR" analytics.AnalyticsEngine/Analyze)
  check "seasonal_decompose period=auto" '"success": true' "$out"
  out=$(grpcurl -plaintext -d '{"algorithm":"anomaly_detection","data":[1,2,3],"params":{"threshold":"soon"}}' "$ADDR" analytics.AnalyticsEngine/Analyze)
  check "a bad threshold is named" "param 'threshold' of anomaly_detection must be a number" "$out"
  out=$(grpcurl -plaintext -d '{"request_id":"t1","algorithm":"sentiment_analysis","params":{"text":"I love this great product"}}' "$ADDR" analytics.AnalyticsEngine/Analyze)
  check "sentiment" 'positive' "$out"
  out=$(grpcurl -plaintext -d '{"request_id":"p1","algorithm":"mean","data":[1,2,3],"options":{"prefer_rust":false,"allow_python":true,"include_metadata":true}}' "$ADDR" analytics.AnalyticsEngine/Analyze)
  check "prefer_rust=false runs python" '"implementation": "python"' "$out"
  check "python mean" '"result_json": "2.0"' "$out"
fi
if (( WORKERS > 0 )); then
  # options.timeout_ms is honoured: TIMEOUT at the deadline, and the engine keeps serving
  start=$(date +%s%N)
  out=$(grpcurl -plaintext -d '{"request_id":"slow","algorithm":"_test_sleep","params":{"seconds":"5"},"options":{"allow_python":true,"timeout_ms":700}}' "$ADDR" analytics.AnalyticsEngine/Analyze)
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  check "timeout_ms gives TIMEOUT" '"error_code": "TIMEOUT"' "$out"
  check "TIMEOUT near the deadline (${ms} ms)" "yes" "$( (( ms >= 650 && ms < 3000 )) && echo yes || echo no)"
  check "python works after a timeout" '"success": true' "$(grpcurl -plaintext -d '{"algorithm":"kmeans","data":[1,2,10,11],"params":{"k":"2"}}' "$ADDR" analytics.AnalyticsEngine/Analyze)"
  # AnalyzeWithProgress (README): running, progress, then the result, the same as Analyze's
  RF='{"request_id":"rf1","algorithm":"random_forest","data":[3,1,4,1,5,9,2,6,5,3,5,8,9,7,9,3,2,3,8,4],"params":{"n_estimators":"100"}}'
  out=$(grpcurl -plaintext -d "$RF" "$ADDR" analytics.AnalyticsEngine/AnalyzeWithProgress)
  check "AnalyzeWithProgress running" '"running"' "$out"
  check "AnalyzeWithProgress progress" '"detail": "100 of 100 trees"' "$out"
  check "AnalyzeWithProgress result" '"success": true' "$out"
  plain=$(grpcurl -plaintext -d "$RF" "$ADDR" analytics.AnalyticsEngine/Analyze | grep '"result_json"')
  check "AnalyzeWithProgress result = Analyze result" "$plain" "$out"
  # a client that gives up (grpcurl -max-time, README) frees its worker: same pid, ready again
  pid_before=$(curl -fsS "http://$ADDR/health" | grep -o '"pid":[0-9]*' | head -1)
  out=$(grpcurl -plaintext -max-time 1 -d '{"algorithm":"random_forest","data":[3,1,4,1,5,9,2,6,5,3,5,8,9,7,9,3,2,3,8,4],"params":{"n_estimators":"10000"}}' "$ADDR" analytics.AnalyticsEngine/Analyze 2>&1 || true)
  check "grpcurl -max-time gives up" "DeadlineExceeded" "$out"
  freed=no
  for _ in $(seq 1 50); do # up to 5 s: the worker answers the cancel in milliseconds
    h=$(curl -fsS "http://$ADDR/health")
    if [[ "$h" == *'"busy":0'* ]]; then freed=yes; break; fi
    sleep 0.1
  done
  check "worker free after the cancel" "yes" "$freed"
  check "same worker process after the cancel" "$pid_before" "$(curl -fsS "http://$ADDR/health")"
  # grpcurl's -max-time is a gRPC deadline: the engine's copy of it (TIMEOUT) or the client's cancel (CANCELLED)
  counted=$(curl -fsS "http://$ADDR/metrics" | grep -cE 'analytics_requests_total\{algorithm="random_forest".*outcome="(CANCELLED|TIMEOUT)"' || true)
  check "the abandoned call is counted (CANCELLED or TIMEOUT)" "1" "$counted"
fi
check "curl /health" '"status":"ok"' "$(curl -fsS "http://$ADDR/health")"
check "curl /metrics" 'analytics_requests_total' "$(curl -fsS "http://$ADDR/metrics")"
check "grpcurl over the unix socket" '"result_json": "2.0"' "$(grpcurl -plaintext -d '{"algorithm":"median","data":[3,1,2]}' "unix://$SOCK" analytics.AnalyticsEngine/Analyze)"
check "--health-check" '"status":"ok"' "$(java -jar engine/target/analytics-engine.jar --health-check --listen "$ADDR")"
check "--version" 'analytics-server' "$(java -jar engine/target/analytics-engine.jar --version)"

if (( WORKERS > 0 )); then
  # SIGTERM drains: a request in flight when the signal arrives still gets its answer
  grpcurl -plaintext -d '{"request_id":"inflight","algorithm":"_test_sleep","params":{"seconds":"1.5"}}' "$ADDR" \
    analytics.AnalyticsEngine/Analyze >"$WORK/inflight.out" 2>&1 &
  CLIENT_PID=$!
  end=$((SECONDS + 20))
  until curl -fsS "http://$ADDR/metrics" | grep -q '^analytics_requests_inflight{[^}]*} 1.0'; do
    (( SECONDS < end )) || { echo "  FAIL the slow request never got in flight"; fails=$((fails+1)); break; }
    sleep 0.05
  done
fi
py_pids=""
if (( WORKERS > 0 )); then
  py_pids=$(curl -fsS "http://$ADDR/health" | python3 -c 'import json, sys
p = json.load(sys.stdin)["python"]
print(" ".join(str(w["pid"]) for w in p["workers"] if w["pid"] > 0), p.get("worker_start", {}).get("template_pid", -1))')
fi
# SIGTERM to the whole process group: engine, template and workers get it at the same moment
log_lines=$(wc -l <"$LOG")
kill -TERM -- "-$ENGINE_PID"
rc=0; wait "$ENGINE_PID" || rc=$?
if (( WORKERS > 0 )); then
  wait "$CLIENT_PID" || true
  check "in-flight request answered during the drain (process-group SIGTERM)" '"success": true' "$(cat "$WORK/inflight.out")"
  check "no worker or template started while stopping" "none" \
    "$(tail -n +"$((log_lines + 1))" "$LOG" | grep -E 'restarting in|spawned pid|forked pid|starting a new template' || echo none)"
  left=""
  end=$((SECONDS + 10))
  for p in $py_pids; do
    (( p > 0 )) || continue
    while kill -0 "$p" 2>/dev/null && (( SECONDS < end )); do sleep 0.05; done
    kill -0 "$p" 2>/dev/null && left="$left $p"
  done
  check "no Python process left after the stop (workers + template: $py_pids)" "none" "${left:-none}"
fi
ENGINE_PID=""
check "SIGTERM exits 0" "rc=0" "rc=$rc"
check "socket removed on exit" "gone" "$( [[ -e "$SOCK" ]] && echo present || echo gone)"
if (( fails )); then echo "e2e: $fails check(s) failed; engine log:"; cat "$LOG"; exit 1; fi
echo "e2e: all checks passed"
