#!/usr/bin/env bash
# The end-to-end suite against a kind cluster. Needs Docker, so it runs where Docker does (CI:
# .github/workflows/e2e-kind.yml, which runs it in a Debian 12 container on the host's network);
# the default path, scripts/test.sh, uses scripts/cluster.sh's local control plane instead.
#
#   1. installs the tools (scripts/install-tools.sh) and builds kind ($KIND in scripts/versions.env);
#   2. creates a kind cluster, builds Referee's image from the Dockerfile and loads it into the node;
#   3. installs Gatekeeper (its Helm chart at the pinned version) and Referee (charts/referee, the
#      loaded image) with `helm install --wait`, and runs `helm test` on Referee's release;
#   4. uninstalls that Referee release (its webhooks would answer for every namespace) and runs
#      tests/e2e/test_kubectl.py with REFEREE_E2E_CLUSTER=kind: the suite installs its own releases
#      of the same chart, with webhook.url pointing at Referee served on this host, which the
#      cluster reaches at the kind network's gateway address (the registries the tests start
#      listen on this host's loopback, where only a Referee on this host can reach them);
#   5. deletes the cluster (KEEP_CLUSTER=1 keeps it). Extra arguments go to pytest.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$root"

command -v docker >/dev/null && docker info >/dev/null 2>&1 || die "Docker is not running; kind needs it"
scripts/install-tools.sh

# kind, built like the other Go tools (scratch module, stamp file, Go's caches).
kind=.tools/bin/kind
if [ "$(cat .tools/bin/.kind.version 2>/dev/null)" != "$KIND" ] || [ ! -x "$kind" ]; then
  log "building kind ${KIND##*@}"
  rm -rf .tools/src/kind && mkdir -p .tools/src/kind
  ( cd .tools/src/kind && go mod init referee.local/tools/kind >/dev/null 2>&1 \
    && go get "$KIND" >/dev/null && CGO_ENABLED=0 go build -trimpath -o "$root/$kind" "${KIND%@*}" )
  printf '%s\n' "$KIND" > .tools/bin/.kind.version
fi
export PATH=$root/.tools/bin:$PATH

name=referee-e2e
work=$root/.tools/kind
mkdir -p "$work"
export KUBECONFIG=$work/kubeconfig
cleanup() {
  if [ "${KEEP_CLUSTER:-}" = 1 ]; then log "keeping cluster $name (KUBECONFIG=$KUBECONFIG)"; return; fi
  kind delete cluster --name "$name" >/dev/null 2>&1 || true
}
trap cleanup EXIT
kind delete cluster --name "$name" >/dev/null 2>&1 || true
kind create cluster --name "$name" --wait 180s

log "building and loading the image"
docker build -t referee:e2e .
kind load docker-image referee:e2e --name "$name"

log "installing Gatekeeper ${GATEKEEPER##*@v}"
helm install gatekeeper gatekeeper --repo https://open-policy-agent.github.io/gatekeeper/charts \
  --version "${GATEKEEPER##*@v}" --namespace gatekeeper-system --create-namespace --wait --timeout 5m

log "installing Referee from charts/referee"
# A throwaway signing CA only so that the release has a trust policy to start with.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "/CN=e2e-kind" \
  -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
{
  printf 'image: {repository: referee, tag: e2e, pullPolicy: Never}\n'
  printf 'trustPolicy:\n  document:\n    version: "1.0"\n    trustPolicies:\n'
  printf '      - {name: all, registryScopes: ["*"], signatureVerification: {level: strict},\n'
  printf '         trustStores: ["ca:e2e"], trustedIdentities: ["*"]}\n'
  printf 'trustStore:\n  certificates:\n    ca:\n      e2e: |\n'
  sed 's/^/        /' "$work/ca.crt"
} > "$work/values.yaml"
helm install referee charts/referee --namespace referee-system --create-namespace \
  --values "$work/values.yaml" --wait --timeout 5m
helm test referee --namespace referee-system --timeout 2m
helm uninstall referee --namespace referee-system --wait

gateway=$(docker network inspect kind -f '{{range .IPAM.Config}}{{.Gateway}} {{end}}' \
  | tr ' ' '\n' | grep -E '^[0-9]+(\.[0-9]+){3}$' | head -n 1)
[ -n "$gateway" ] || die "no IPv4 gateway on the kind network"
log "running the suite (Referee served on $gateway)"
REFEREE_E2E_CLUSTER=kind REFEREE_E2E_WEBHOOK_HOST=$gateway \
  .venv/bin/python -m pytest tests/e2e/test_kubectl.py "$@"
