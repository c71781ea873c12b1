#!/usr/bin/env bash
# Shared helpers for the test and bench scripts: free ports, grpcurl, waiting for health.
# Source it: . "$ROOT/scripts/lib/tools.sh"

TOOLS_BIN="${TOOLS_BIN:-$ROOT/.tools/bin}"

# free_port: prints a TCP port nobody listens on right now (the kernel picks it).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# ensure_grpcurl: puts grpcurl on PATH, installing it from the Go module proxy into .tools/bin if needed.
ensure_grpcurl() {
  if command -v grpcurl >/dev/null 2>&1; then return 0; fi
  if [[ -x "$TOOLS_BIN/grpcurl" ]]; then export PATH="$TOOLS_BIN:$PATH"; return 0; fi
  if ! command -v go >/dev/null 2>&1; then
    echo "grpcurl is needed and Go is not installed to build it: install grpcurl (https://github.com/fullstorydev/grpcurl) or Go" >&2
    return 1
  fi
  echo "installing grpcurl v1.9.3 into $TOOLS_BIN (go install) ..."
  mkdir -p "$TOOLS_BIN"
  if ! GOBIN="$TOOLS_BIN" go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3; then
    echo "could not install grpcurl with 'go install' (no access to the Go module proxy?)" >&2
    return 1
  fi
  export PATH="$TOOLS_BIN:$PATH"
}

# wait_healthy URL SECONDS: polls GET URL until 200 or the deadline; returns 1 on timeout.
wait_healthy() {
  local url="$1" secs="${2:-30}" end=$((SECONDS + ${2:-30}))
  while (( SECONDS < end )); do
    if curl -fsS -o /dev/null "$url" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "not healthy after ${secs}s: $url" >&2
  return 1
}
