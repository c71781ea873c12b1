#!/usr/bin/env bash
# Fault-injection suite: a real engine process (java -jar engine/target/analytics-engine.jar, ANALYTICS_TEST_MODE=1)
# with 2 real Python workers under a steady gRPC load, then: worker kill -9, worker hang, worker memory blow-up,
# garbage frame, worker exit during its handshake, all workers killed, a 10x overload flood, engine SIGTERM under
# load. Asserts exactly one answer per request id, documented error codes only, pool recovery, and no thread/fd/
# child-process leak (from /proc). (The bounded coverage-guided fuzz run is its own suite: tests/fuzz.sh.)
# The harness is analytics.engine.faults.FaultSuite (engine test sources). Figures: docs/RELIABILITY.md.
# Usage: tests/faults.sh            (the python used for the workers is
#        py-worker/.venv/bin/python from scripts/build.sh, or $ANALYTICS_PYTHON)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
REAL_PY="${ANALYTICS_PYTHON:-$ROOT/py-worker/.venv/bin/python}"
if [[ ! -x "$REAL_PY" ]]; then
  echo "faults.sh: no Python for the workers at $REAL_PY: run ./scripts/build.sh (creates py-worker/.venv) or set ANALYTICS_PYTHON" >&2
  exit 2
fi
WORK="$(mktemp -d -t analytics-faults.XXXXXX)"
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
[[ -f engine/target/analytics-engine.jar ]] || mvn -q -B -DskipTests -Dgit.commit=faults package >/dev/null
mvn -q -B -Dgit.commit=faults test-compile >/dev/null   # up to date → a few seconds
mvn -q -B -pl engine dependency:build-classpath -Dmdep.includeScope=test -Dmdep.outputFile="$WORK/cp.txt" >/dev/null

# The workers' interpreter, wrapped: an address-space cap (the pool itself sets none; see docs/RELIABILITY.md) and
# a test hook that makes the next started worker connect, send half a frame header and exit (exit in handshake).
# Spawned workers run the hook here; in fork-server mode (the default) the template is started through this
# wrapper and the hook wraps server.run_worker, which every forked child calls after the fork.
AS_LIMIT_KB=$((1536 * 1024))
cat >"$WORK/python" <<WRAP
#!/usr/bin/env bash
if [[ -n "\${FAULT_DIR:-}" && -e "\$FAULT_DIR/exit-in-handshake" && " \$* " != *" --template "* ]]; then
  rm -f "\$FAULT_DIR/exit-in-handshake"
  exec "$REAL_PY" -c 'import os, socket, sys
a = sys.argv
s = socket.socket(socket.AF_UNIX)
s.connect(a[a.index("--socket") + 1])
s.sendall(b"\x00\x00")
os._exit(3)' "\$@"
fi
ulimit -v $AS_LIMIT_KB
if [[ " \$* " == *" --template "* && -n "\${FAULT_DIR:-}" ]]; then
  exec "$REAL_PY" -c 'import os, socket, sys
import analytics_worker.__main__  # the BLAS/OpenMP thread defaults that python -m analytics_worker sets
from analytics_worker import server
real_run_worker = server.run_worker
def run_worker(socket_path, *args, **kwargs):
    flag = os.path.join(os.environ["FAULT_DIR"], "exit-in-handshake")
    if os.path.exists(flag):
        os.remove(flag)
        s = socket.socket(socket.AF_UNIX)
        s.connect(socket_path)
        s.sendall(b"\x00\x00")
        os._exit(3)
    return real_run_worker(socket_path, *args, **kwargs)
server.run_worker = run_worker
argv = sys.argv[1:]
if argv[:2] == ["-m", "analytics_worker"]:
    argv = argv[2:]
sys.exit(server.main(argv))' "\$@"
fi
exec "$REAL_PY" "\$@"
WRAP
chmod +x "$WORK/python"

echo "== fault injection (real engine + workers; engine log: kept on failure)"
set +e
timeout 300 java -Xmx512m -cp "engine/target/test-classes:engine/target/classes:$(cat "$WORK/cp.txt")" \
  analytics.engine.faults.FaultSuite engine/target/analytics-engine.jar "$WORK/python" "$WORK/run" py-worker
rc=$?
set -e
if (( rc != 0 )); then
  keep="$(mktemp -d -t analytics-faults-failed.XXXXXX)"
  cp -r "$WORK/run/." "$keep/" 2>/dev/null || true
  echo "faults.sh: FAILED (exit $rc); engine log and summary kept in $keep"
  exit 1
fi
cp "$WORK/run/faults-summary.json" "${FAULTS_SUMMARY_OUT:-/dev/null}" 2>/dev/null || true
