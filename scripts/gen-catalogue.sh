#!/usr/bin/env bash
# Regenerates the engine's copy of the Python algorithm catalogue from the worker package.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/engine/src/main/resources/analytics/engine/catalogue/python-algorithms.json"
case "${1:-}" in
  -h|--help)
    cat <<'USAGE'
Usage: scripts/gen-catalogue.sh [--check]

Writes engine/src/main/resources/analytics/engine/catalogue/python-algorithms.json from what the
worker package declares (python -m analytics_worker.catalogue: parameters with type, default, allowed
values; minimum points; input kind). The engine validates Python algorithms' requests, answers
GetSupportedAlgorithms and prints the README table from that file. Run it after changing an
algorithm's @params/@algorithm declaration in py-worker/; CatalogueDriftTest fails until you do.
  --check   only compare; exit 1 when the file is out of date
Environment: PYTHON (default py-worker/.venv/bin/python, else python3).
USAGE
    exit 0 ;;
esac
PY="${PYTHON:-$ROOT/py-worker/.venv/bin/python}"
[ -x "$PY" ] || PY=python3
TMP="$(mktemp)"
trap 'rm -f "$TMP"' EXIT
(cd "$ROOT/py-worker" && "$PY" -c 'import sys; sys.path.insert(0, "."); from analytics_worker.catalogue import main; sys.exit(main())') >"$TMP"
if [ "${1:-}" = "--check" ]; then
  if cmp -s "$TMP" "$OUT"; then echo "catalogue up to date"; exit 0; fi
  echo "catalogue out of date: run scripts/gen-catalogue.sh" >&2
  diff -u "$OUT" "$TMP" >&2 || true
  exit 1
fi
cp "$TMP" "$OUT"
echo "wrote $OUT"
