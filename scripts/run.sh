#!/usr/bin/env bash
# Runs the engine in the foreground (development mode). Ctrl-C stops it cleanly.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  cat <<'USAGE'
Usage: scripts/run.sh [analytics-server options]

Runs the engine built by scripts/build.sh in the foreground, with the Python workers from
py-worker/.venv, listening on 127.0.0.1:50051 (gRPC + GET /health + GET /metrics).
Ctrl-C (SIGINT) drains in-flight requests and exits 0. Any analytics-server option works, e.g.
  scripts/run.sh --listen 127.0.0.1:6000 --workers 1
  scripts/run.sh --print-config
Environment: every ANALYTICS_* setting (see README "Configuration"), JAVA_OPTS (replaces the default
JVM flags: default_java_opts in scripts/analytics-server, the deployed launcher's; README "JVM flags").
USAGE
  exec java -jar engine/target/analytics-engine.jar --help
fi
JAR=engine/target/analytics-engine.jar
if [[ ! -f "$JAR" ]]; then
  echo "run.sh: $JAR not found: run ./scripts/build.sh first" >&2
  exit 1
fi
export ANALYTICS_PYTHON="${ANALYTICS_PYTHON:-$ROOT/py-worker/.venv/bin/python}"
# exec: the JVM receives Ctrl-C/SIGTERM itself and shuts down gracefully.
# shellcheck disable=SC2086
# The default JVM flags are the deployed launcher's (default_java_opts in scripts/analytics-server, the one
# place they are written; bench/harness.py reads them from there too). JAVA_OPTS replaces them.
default_java_opts=$(sed -n 's/^default_java_opts="\(.*\)"$/\1/p' scripts/analytics-server)
if [[ -z "$default_java_opts" ]]; then
  echo "run.sh: no default_java_opts line in scripts/analytics-server" >&2
  exit 1
fi
exec java ${JAVA_OPTS:-$default_java_opts} \
  -Danalytics.process=analytics-server \
  -jar "$JAR" "$@"
