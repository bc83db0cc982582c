#!/usr/bin/env bash
# Builds Ratify (the version in scripts/versions.env) into .tools/bin for bench/bench_peers.py, the
# side-by-side benchmark. The test command never builds it. Idempotent, like install-tools.sh.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$root"

bin=.tools/bin/ratify
stamp=.tools/bin/.ratify.version
if [ -x "$bin" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$RATIFY" ]; then
  log "ratify ${RATIFY##*@} present"; exit 0
fi
command -v go >/dev/null || die "go not found; it is needed to build ratify"
log "building ratify ${RATIFY##*@} (about four minutes the first time)"
mod=.tools/src/ratify
rm -rf "$mod" && mkdir -p "$mod"
# Ratify's go.mod requires a pseudo-version of github.com/open-policy-agent/frameworks/constraint
# that the Go checksum database does not serve, so `go get` cannot verify it there: skip the
# checksum database for that one module path only (its go.sum entry is still written and checked
# on every later build).
( cd "$mod"
  go mod init referee.local/tools/ratify >/dev/null 2>&1
  GONOSUMDB=github.com/open-policy-agent/frameworks go get "$RATIFY" >/dev/null
  GONOSUMDB=github.com/open-policy-agent/frameworks GOBIN="$root/.tools/bin" CGO_ENABLED=0 \
    go install -trimpath "${RATIFY%@*}" ) || die "could not build ratify"
printf '%s\n' "$RATIFY" > "$stamp"
