#!/usr/bin/env bash
# Benchmark harness: the engine vs a plain Python grpcio baseline, side by side (not part of the tests).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

usage() {
  cat <<'USAGE'
Usage: scripts/bench.sh [--scenario NAME]... [--duration SECONDS] [--runs N] [--no-build] [-h|--help]

Builds what is missing (engine via scripts/build.sh, bench/.venv, Python stubs, ghz, the JMH project),
starts the engine (2 Python workers, ANALYTICS_TEST_MODE=1) and the baseline (bench/baseline/server.py)
on free ports, runs the scenarios alternating ours/baseline, stops everything it started by PID, and
writes bench/results/latest.md (table) and bench/results/latest.json (raw numbers). Logs and tool
output go to bench/results/raw/ (git-ignored).

Options:
  --scenario NAME   run only this scenario (repeatable). Names:
                      mean_c1 mean_c32 summary_1e6 kernels python_overhead payload_8mb rf_c4
                      batch_1000 rss startup worker_replace fork_server
                      summary_1e6_c4 mean_1e6 summary_1e7 rss_c16   (large requests)
  --duration S      seconds per measurement (default 10)
  --runs N          alternating runs; medians and spread are over runs (default 3)
  --output NAME     write bench/results/NAME.md and NAME.json (default latest)
  --no-build        do not rebuild even if the engine's sources are newer than the jar, or py-worker's
                    sources newer than the copy installed in py-worker/.venv (which the workers run)
  -h, --help        this help
Environment: BENCH_JAVA_OPTS (extra JVM flags for the engine, e.g. -XX:StartFlightRecording=...),
             BENCH_BEFORE_JAR (an engine jar built from an earlier commit: the large-request scenarios
             also run against it, in the same run, as "(before)" rows; so does python_overhead,
             on that jar with 2 workers, after the current engine's measurement),
             BENCH_BEFORE_JAVA_OPTS (that jar's JVM flags, e.g. the defaults it shipped with; default: ours),
             BENCH_BEFORE_MALLOC_ENV=1 (that jar with the launcher's glibc malloc settings too; default: our
             engine alone gets them, as scripts/analytics-server sets them),
             GHZ_VERSION (default v0.120.0), PYTHON (python3 for bench/.venv).
See bench/README.md for what each scenario measures.
USAGE
}

ARGS=()
BUILD=1
while (( $# )); do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --scenario|--duration|--runs|--output)
      [[ $# -ge 2 ]] || { echo "bench.sh: $1 needs a value (see --help)" >&2; exit 2; }
      ARGS+=("$1" "$2"); shift 2 ;;
    --no-build) BUILD=0; shift ;;
    *) echo "bench.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done

mkdir -p bench/results/raw

# 1. the engine (and py-worker/.venv), when missing or older than its sources
JAR=engine/target/analytics-engine.jar
export BENCH_ENGINE_BUILD_ERROR=""
needs_build() {
  [[ ! -f "$JAR" || ! -x py-worker/.venv/bin/python ]] && return 0
  [[ -n "$(find engine/src proto py-worker/analytics_worker pom.xml engine/pom.xml -newer "$JAR" -type f 2>/dev/null | head -1)" ]] \
    && return 0
  # The workers run the copy of py-worker installed into the venv, not the sources: a jar rebuilt by mvn after a
  # py-worker change must not hide that the installed copy is older than the sources.
  local installed
  installed=$(ls -d py-worker/.venv/lib/python3*/site-packages/analytics_worker/__init__.py 2>/dev/null | head -1)
  [[ -z "$installed" ]] && return 0
  [[ -n "$(find py-worker/analytics_worker -newer "$installed" -type f -name '*.py' 2>/dev/null | head -1)" ]]
}
if (( BUILD )) && needs_build; then
  echo "==> building the engine (scripts/build.sh --no-dist)"
  if ! ./scripts/build.sh --no-dist > bench/results/raw/build.log 2>&1; then
    BENCH_ENGINE_BUILD_ERROR="engine build failed: $(grep -m1 -E 'ERROR|error' bench/results/raw/build.log | cut -c1-200)"
    echo "bench.sh: $BENCH_ENGINE_BUILD_ERROR (full log: bench/results/raw/build.log); benchmarking what runs" >&2
  fi
fi

# 2. bench/.venv with the baseline's and the clients' packages
PY="${PYTHON:-python3}"
if [[ ! -x bench/.venv/bin/python ]]; then
  echo "==> creating bench/.venv"
  "$PY" -m venv bench/.venv
fi
if ! bench/.venv/bin/python -c 'import grpc, grpc_tools, numpy, scipy, sklearn' 2>/dev/null; then
  bench/.venv/bin/pip install -q --disable-pip-version-check grpcio grpcio-tools numpy scipy scikit-learn
fi

# 3. Python stubs for the baseline and the clients (bench/baseline/_gen, git-ignored)
if [[ ! -f bench/baseline/_gen/analytics_pb2.py || proto/analytics.proto -nt bench/baseline/_gen/analytics_pb2.py ]]; then
  bench/baseline/gen_stubs.sh bench/.venv/bin/python
fi

# 4. ghz from the Go module proxy into .tools/bin (git-ignored)
GHZ_VERSION="${GHZ_VERSION:-v0.120.0}"
if [[ ! -x .tools/bin/ghz ]]; then
  command -v go >/dev/null || { echo "bench.sh: Go is needed to install ghz (apt-get install golang)" >&2; exit 1; }
  echo "==> go install github.com/bojand/ghz/cmd/ghz@$GHZ_VERSION"
  mkdir -p .tools/bin
  GOBIN="$ROOT/.tools/bin" go install "github.com/bojand/ghz/cmd/ghz@$GHZ_VERSION"
fi

# 5. run (the harness builds the JMH project itself, against the engine jar)
exec bench/.venv/bin/python bench/harness.py "${ARGS[@]}"
