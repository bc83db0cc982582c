#!/usr/bin/env bash
# Gatekeeper's manager, built from its Go module at the version in scripts/versions.env, and run as
# a local process against a kube-apiserver.
#
#   scripts/gatekeeper.sh build        build .tools/bin/gatekeeper-manager (idempotent: stamp file,
#                                      Go's module and build caches)
#   scripts/gatekeeper.sh crds         print the directory that holds the CRDs of that same version
#   scripts/gatekeeper.sh module-dir   print the module's directory in Go's module cache
#
# The module has no replace directives, so a scratch module that requires it builds the manager
# (main.go at the module root) with the module's own dependency versions.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$root"

module=${GATEKEEPER%@*}
version=${GATEKEEPER##*@}
bin=.tools/bin/gatekeeper-manager
stamp=.tools/bin/.gatekeeper-manager.version

module_dir() {
  command -v go >/dev/null || die "go not found"
  local dir
  dir=$(go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
  [ -d "$dir" ] || die "could not download $module@$version"
  printf '%s\n' "$dir"
}

build() {
  if [ -x "$bin" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$GATEKEEPER" ]; then
    log "gatekeeper manager $version present"; return
  fi
  command -v go >/dev/null || die "go not found; it is needed to build the Gatekeeper manager"
  log "building the gatekeeper manager $version (the first build takes minutes; later ones use Go's caches)"
  local mod=.tools/src/gatekeeper-manager
  rm -rf "$mod" && mkdir -p "$mod" .tools/bin
  ( cd "$mod"
    go mod init referee.local/tools/gatekeeper-manager >/dev/null 2>&1
    go get "$module@$version" >/dev/null
    CGO_ENABLED=0 go build -trimpath \
      -ldflags "-X $module/pkg/version.Version=$version" \
      -o "$root/$bin" "$module" ) || die "could not build the gatekeeper manager"
  printf '%s\n' "$GATEKEEPER" > "$stamp"
}

case ${1:-} in
  build) build ;;
  module-dir) module_dir ;;
  crds) printf '%s/charts/gatekeeper/crds\n' "$(module_dir)" ;;
  *) die "usage: $0 build|crds|module-dir" ;;
esac
