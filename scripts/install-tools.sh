#!/usr/bin/env bash
# Installs everything the demo and the tests need, at the versions in scripts/versions.env:
#   - Debian packages (docker-registry, apache2-utils, wrk, redis-server) through apt-get;
#   - Go-built tools (olareg, oras, notation, opa, helm) into .tools/bin;
#   - a Python virtual environment with Referee and its development tools in .venv.
# Idempotent: a tool already built at the recorded version is not rebuilt. Go's module and build
# caches are the user's usual ones, so a second run (and CI on the same machine) reuses them.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$root"

install_debs() {
  local want=("docker-registry=$DOCKER_REGISTRY_DEB" "apache2-utils=$APACHE2_UTILS_DEB" "wrk=$WRK_DEB" "redis-server=$REDIS_SERVER_DEB") missing=()
  local spec name version
  for spec in "${want[@]}"; do
    name=${spec%%=*}; version=${spec#*=}
    if [ "$(dpkg-query -W -f='${Version}' "$name" 2>/dev/null || true)" != "$version" ]; then
      missing+=("$spec")
    fi
  done
  [ ${#missing[@]} -eq 0 ] && { log "Debian packages present"; return; }
  command -v apt-get >/dev/null || die "apt-get not found; install ${missing[*]} by other means"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  log "apt-get install ${missing[*]}"
  $sudo apt-get update -qq
  # The packages' maintainer scripts would start a system-wide registry on :5000 and a Redis on
  # :6379; tests start their own, so keep the services from starting.
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_go_tool() {  # NAME "module/package@version"
  local name=$1 spec=$2 pkg=${2%@*} version=${2##*@}
  local bin=".tools/bin/$name" stamp=".tools/bin/.$name.version"
  if [ -x "$bin" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$spec" ]; then
    log "$name $version present"; return
  fi
  command -v go >/dev/null || die "go not found; it is needed to build $name"
  log "building $name $version (first build takes minutes; later ones use Go's caches)"
  # A scratch module per tool: 'go install pkg@version' insists on reading the module's version
  # list, which the module proxy may refuse; 'go get' of the exact version in a module does not.
  local mod=".tools/src/$name"
  rm -rf "$mod" && mkdir -p "$mod"
  ( cd "$mod"
    go mod init "referee.local/tools/$name" >/dev/null 2>&1
    go get "$pkg@$version" >/dev/null
    GOBIN="$root/.tools/bin" CGO_ENABLED=0 go install -trimpath "$pkg" ) || die "could not build $name"
  printf '%s\n' "$spec" > "$stamp"
}

install_local_go() {  # NAME: build tests/conformance/NAME (a Go program of this repository)
  local name=$1 src=tests/conformance/$1 stamp=.tools/bin/.$1.version want
  want=$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -d' ' -f1)
  if [ -x ".tools/bin/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    log "$name present"; return
  fi
  log "building $name (the first build can take a few minutes)"
  ( cd "$src" && CGO_ENABLED=0 go build -trimpath -o "$root/.tools/bin/$name" . ) || die "could not build $name"
  printf '%s\n' "$want" > "$stamp"
}

install_python() {
  local py=${PYTHON:-python3}
  "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "Python >= 3.11 is required"
  if [ ! -x .venv/bin/python ]; then
    log "creating .venv"
    "$py" -m venv .venv
  fi
  local stamp=.venv/.requirements.sha256
  local want
  want=$(cat requirements-dev.txt pyproject.toml | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    log "Python packages present"; return
  fi
  log "installing Python packages into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
  printf '%s\n' "$want" > "$stamp"
}

mkdir -p .tools/bin
command -v openssl >/dev/null || die "openssl not found; the tests run its OCSP responder and TSA (apt-get install openssl)"
install_debs
install_go_tool olareg "$OLAREG"
install_go_tool oras "$ORAS"
install_go_tool notation "$NOTATION"
install_go_tool opa "$OPA"
install_go_tool helm "$HELM"
# kube-apiserver, kubectl and etcd: the control plane of the end-to-end tests.
scripts/cluster.sh build
# The Gatekeeper manager (v3.23.1) the end-to-end tests run against the real kube-apiserver.
scripts/gatekeeper.sh build
# refparse: the distribution reference library the reference tests compare with.
install_local_go refparse
# gkharness: Gatekeeper's own engine (v3.23.1), evaluating policies/ against a live Referee.
install_local_go gkharness
install_python
log "done: tools in .tools/bin, Python in .venv"
