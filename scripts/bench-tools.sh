#!/usr/bin/env bash
# The benchmarks' load generator, built from the Go module proxy and cached under .local/bin:
#   vegeta   open-loop HTTP load at a fixed arrival rate (github.com/tsenart/vegeta), pinned by
#            bench/tools/go.mod and go.sum. Built with `go build` inside that module because the
#            proxy serves the pinned version but not the module's version list that
#            `go install pkg@version` asks for.
# Usage: bench-tools.sh install | path
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/.local/bin"
LOGS="$ROOT/.local/logs"
MODULE="$ROOT/bench/tools"
VEGETA="$BIN/vegeta"

install_vegeta() {
  local stamp
  stamp="$BIN/.vegeta-$(sha256sum "$MODULE/go.sum" | cut -c1-16)"
  if [[ -x "$VEGETA" && -f "$stamp" ]]; then return; fi
  command -v go >/dev/null || { echo "bench-tools: go is required to build vegeta" >&2; exit 1; }
  mkdir -p "$BIN" "$LOGS"
  echo "bench-tools: building vegeta with go build (first time takes a minute)"
  (cd "$MODULE" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -o "$VEGETA" github.com/tsenart/vegeta/v12) \
    >"$LOGS/vegeta-install.log" 2>&1 \
    || { tail -20 "$LOGS/vegeta-install.log" >&2; echo "bench-tools: could not build vegeta" >&2; exit 1; }
  rm -f "$BIN"/.vegeta-*
  touch "$stamp"
}

case "${1:-install}" in
  install) install_vegeta ;;
  path) echo "$VEGETA" ;;
  *) echo "usage: $0 install | path" >&2; exit 2 ;;
esac
