#!/usr/bin/env bash
# Engine CPU per Python call, by thread: where the small-request toll is spent (bench/README.md,
# "The small-request toll"). Starts one engine (2 workers, test mode) on a free port, warms it with 4 s of
# `_test_echo` at c=1 (ghz), then reads /proc/PID/task/*/stat around a second 4 s run and prints each
# thread group's CPU time (clock ticks, 10 ms) and µs per call. Stops the engine it started, by PID.
# WARM=seconds of warm-up (default 20: shorter leaves the JIT compilers busy during the measurement).
# Needs ./scripts/build.sh and ghz in .tools/bin (scripts/bench.sh installs it).
set -euo pipefail
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  echo "Usage: bench/toll_threads.sh   (JAR=path/to/analytics-engine.jar to measure another build, WARM=seconds)"; exit 0
fi
cd "$(dirname "$0")/.."
JAR=${JAR:-engine/target/analytics-engine.jar}
GHZ=.tools/bin/ghz
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1]);s.close()')
LOG=$(mktemp)
ANALYTICS_PYTHON=py-worker/.venv/bin/python ANALYTICS_TEST_MODE=1 \
  java -Xms16m -Xmx1g -XX:+UseSerialGC -jar "$JAR" --listen 127.0.0.1:$PORT --workers 2 >"$LOG" 2>&1 &
EPID=$!
trap 'kill $EPID 2>/dev/null; wait $EPID 2>/dev/null; rm -f "$LOG"' EXIT
ready=""
for _ in $(seq 1 300); do   # poll /health up to 30 s for all workers ready
  if curl -sf "http://127.0.0.1:$PORT/health" | grep -q '"ready": *2\|"ready":2'; then ready=1; break; fi
  sleep 0.1
done
[[ -n "$ready" ]] || { echo "engine not ready; log:"; tail -20 "$LOG"; exit 1; }
DATA='{"request_id":"b","algorithm":"_test_echo","data":[1,2,3,4,5,6,7,8,9,10]}'
WARM=${WARM:-20}
run() { "$GHZ" --insecure --proto proto/analytics.proto --call analytics.AnalyticsEngine.Analyze -d "$DATA" \
          -c 1 --connections 1 -z "${1:-4}s" 127.0.0.1:$PORT; }
snap() {
  for t in /proc/$EPID/task/*; do
    echo "$(tr ' ' '_' <"$t/comm") $(cut -d')' -f2 "$t/stat" | awk '{print $12+$13}')"
  done | awk '{a[$1]+=$2} END {for (k in a) print k, a[k]}' | sort
}
run "$WARM" >/dev/null
S0=$(snap)
OUT=$(run)
S1=$(snap)
N=$(echo "$OUT" | awk '/Count:/ {print $2}')
echo "$OUT" | grep -E "Count|50 % in"
HZ=$(getconf CLK_TCK)
join <(echo "$S0") <(echo "$S1") | awk -v n="$N" -v hz="$HZ" \
  '{d=$3-$2; t+=d; if (d>0) printf "%-18s %4d ticks  %6.1f us/call\n", $1, d, d*1e6/hz/n} END {printf "%-18s %4d ticks  %6.1f us/call\n", "total", t, t*1e6/hz/n}'
