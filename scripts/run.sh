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
Runs through scripts/analytics-server, the deployed launcher (Java 17+ from $ANALYTICS_JAVA, $JAVA_HOME or
PATH; its default JVM flags and glibc malloc settings; README "JVM flags").
Environment: every ANALYTICS_* setting (see README "Configuration"), JAVA_OPTS or ANALYTICS_JAVA_OPTS
(replace the default JVM flags; JAVA_OPTS wins).
USAGE
  exec java -jar engine/target/analytics-engine.jar --help
fi
JAR=engine/target/analytics-engine.jar
if [[ ! -f "$JAR" ]]; then
  echo "run.sh: $JAR not found: run ./scripts/build.sh first" >&2
  exit 1
fi
export ANALYTICS_PYTHON="${ANALYTICS_PYTHON:-$ROOT/py-worker/.venv/bin/python}"
# The deployed launcher, from this checkout: the same default JVM flags (default_java_opts) and glibc malloc
# settings (default_malloc_env) as a deployed engine, both written only there. JAVA_OPTS replaces the flags.
if [[ -n "${JAVA_OPTS:-}" ]]; then
  export ANALYTICS_JAVA_OPTS="$JAVA_OPTS"
fi
# exec: the JVM receives Ctrl-C/SIGTERM itself and shuts down gracefully.
exec "$ROOT/scripts/analytics-server" "$@"
