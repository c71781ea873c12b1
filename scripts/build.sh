#!/usr/bin/env bash
# Builds the engine (Maven), the Python worker venv, and the deployable dist/analytics-engine/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

usage() {
  cat <<'USAGE'
Usage: scripts/build.sh [--skip-tests] [--no-venv] [--no-dist] [--with-wheels] [-h|--help]

Builds everything a fresh machine needs, after checking the prerequisites
(JDK >= 17 with javac, Maven >= 3.6, python3 >= 3.9 with venv):
  1. engine/target/analytics-engine.jar + engine/target/lib/   (mvn package; unit tests are run
     by scripts/test.sh, so the build skips them)
  2. py-worker/.venv  with `pip install -r requirements.txt`   (the Python workers' environment)
  3. dist/analytics-engine/  self-contained install tree        (scripts/lib/assemble-dist.sh)

Options:
  --no-venv       do not create/update py-worker/.venv
  --no-dist       do not assemble dist/analytics-engine/
  --with-wheels   also download offline wheels into dist/ (for deploy.sh --remote-host)
  -h, --help      this help
Environment: PYTHON (python3 to build the venv with), MAVEN_ARGS (extra mvn arguments).
USAGE
}

VENV=1; DIST=1; WHEELS=0
for a in "$@"; do
  case "$a" in
    --no-venv) VENV=0 ;;
    --no-dist) DIST=0 ;;
    --with-wheels) WHEELS=1 ;;
    --skip-tests) ;; # accepted for compatibility: the build never runs tests
    -h|--help) usage; exit 0 ;;
    *) echo "build.sh: unknown option '$a' (see --help)" >&2; exit 2 ;;
  esac
done

missing=0
fail() { echo "build.sh: $*" >&2; missing=1; }
if ! command -v java >/dev/null || ! command -v javac >/dev/null; then
  fail "a JDK 17 or newer is required (java and javac not found). Debian/Ubuntu: apt-get install openjdk-17-jdk-headless"
else
  jv=$(javac -version 2>&1 | sed -E 's/^javac ([0-9]+).*/\1/')
  if ! [[ "$jv" =~ ^[0-9]+$ ]] || (( jv < 17 )); then
    fail "JDK 17 or newer is required, found: $(javac -version 2>&1). Set JAVA_HOME / PATH to a JDK >= 17"
  fi
fi
if ! command -v mvn >/dev/null; then
  fail "Maven is required (mvn not found). Debian/Ubuntu: apt-get install maven"
fi
PY="${PYTHON:-python3}"
if ! command -v "$PY" >/dev/null; then
  fail "python3 >= 3.9 is required ($PY not found). Debian/Ubuntu: apt-get install python3 python3-venv"
elif ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)'; then
  fail "python3 >= 3.9 is required, found $("$PY" --version 2>&1)"
elif ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then
  fail "the Python venv module is missing. Debian/Ubuntu: apt-get install python3-venv"
fi
(( missing == 0 )) || exit 1

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
echo "==> mvn package (engine, git $commit)"
# shellcheck disable=SC2086
mvn -q -B -DskipTests -Dgit.commit="$commit" ${MAVEN_ARGS:-} package
echo "    engine/target/analytics-engine.jar"

if (( VENV )); then
  echo "==> Python venv py-worker/.venv (pip install -r requirements.txt)"
  if [[ ! -x py-worker/.venv/bin/python ]]; then
    "$PY" -m venv py-worker/.venv
  fi
  # setuptools reuses py-worker/build/ between builds, which can install stale modules: start clean,
  # and force the (dependency-free, fast) reinstall of the worker package itself.
  rm -rf py-worker/build py-worker/*.egg-info
  py-worker/.venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
  py-worker/.venv/bin/pip install -q --disable-pip-version-check --no-deps --force-reinstall ./py-worker
  rm -rf py-worker/build py-worker/*.egg-info
  py-worker/.venv/bin/python -c 'import analytics_worker' \
    || { echo "build.sh: the worker package did not install into py-worker/.venv" >&2; exit 1; }
fi

if (( DIST )) && [[ -x scripts/lib/assemble-dist.sh ]]; then
  echo "==> dist/analytics-engine"
  if (( WHEELS )); then scripts/lib/assemble-dist.sh --with-wheels; else scripts/lib/assemble-dist.sh; fi
fi
echo "==> build OK. Run the engine: ./scripts/run.sh   Test: ./scripts/test.sh"
