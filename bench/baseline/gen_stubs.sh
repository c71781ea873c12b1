#!/usr/bin/env bash
# Generates the Python gRPC stubs for proto/analytics.proto into bench/baseline/_gen (git-ignored).
# Usage: bench/baseline/gen_stubs.sh [PYTHON]   (PYTHON needs grpcio-tools; default bench/.venv/bin/python)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${1:-$ROOT/bench/.venv/bin/python}"
OUT="$ROOT/bench/baseline/_gen"
mkdir -p "$OUT"
"$PY" -m grpc_tools.protoc -I "$ROOT/proto" --python_out="$OUT" --grpc_python_out="$OUT" "$ROOT/proto/analytics.proto"
touch "$OUT/__init__.py"
