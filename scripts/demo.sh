#!/usr/bin/env bash
# Referee demo, all local: two registries (CNCF Distribution without the referrers API, olareg with it),
# an image signed with notation and given an SBOM with oras, and what Referee discovers on each.
# Everything it starts is stopped, and its files removed, when it ends.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=versions.env
. scripts/versions.env  # KUBERNETES: the version helm template is told the cluster runs

scripts/install-tools.sh >/dev/null 2>&1 || scripts/install-tools.sh
tools="$root/.tools/bin"
py="$root/.venv/bin/python"

work=$(mktemp -d -t referee-demo.XXXXXX)
pids=()
cleanup() {
  [ ! -d "$work/cluster" ] || "$root/scripts/cluster.sh" down "$work/cluster" >/dev/null 2>&1 || true
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() {  # URL
  for _ in $(seq 1 100); do
    "$py" -c 'import sys, requests; requests.get(sys.argv[1], timeout=1).raise_for_status()' "$1" \
      >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "registry at $1 did not start" >&2; exit 1
}
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
referee() { printf '$ referee %s\n' "$*"; "$py" -m webhook "$@"; }

step "Starting two local registries"
dist_port=$(free_port)
cat > "$work/distribution.yml" <<YAML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $work/distribution}}
http: {addr: 127.0.0.1:$dist_port}
YAML
docker-registry serve "$work/distribution.yml" >"$work/distribution.log" 2>&1 &
pids+=($!)
ola_port=$(free_port)
"$tools/olareg" serve --addr 127.0.0.1 --port "$ola_port" --dir "$work/olareg" >"$work/olareg.log" 2>&1 &
pids+=($!)
wait_ready "http://127.0.0.1:$dist_port/v2/"
wait_ready "http://127.0.0.1:$ola_port/v2/"
echo "CNCF Distribution 2.8 (no referrers API): 127.0.0.1:$dist_port"
echo "olareg (OCI 1.1 referrers API):           127.0.0.1:$ola_port"

step "Making a signing key with notation (a test certificate)"
export XDG_CONFIG_HOME="$work/config"
"$tools/notation" cert generate-test --default demo.referee.example >/dev/null
echo "key 'demo.referee.example' created in $XDG_CONFIG_HOME/notation"

cd "$work"
echo "hello from referee" > app.txt
echo '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' > config.json
echo '{"spdxVersion":"SPDX-2.3","name":"demo-app"}' > sbom.spdx.json

for entry in "distribution:$dist_port:" "olareg:$ola_port:--force-referrers-tag=false"; do
  IFS=: read -r kind port sign_flag <<<"$entry"
  image="127.0.0.1:$port/demo/app:v1"
  step "[$kind] Push an image, sign it with notation, attach an SBOM with oras"
  digest=$("$tools/oras" push --plain-http "$image" \
    --config config.json:application/vnd.oci.image.config.v1+json \
    app.txt:application/vnd.oci.image.layer.v1.tar --format go-template --template '{{.digest}}')
  echo "pushed $image -> $digest"
  # shellcheck disable=SC2086 # the flag is empty for the registry without the referrers API
  "$tools/notation" sign --insecure-registry $sign_flag "127.0.0.1:$port/demo/app@$digest" 2>/dev/null
  "$tools/oras" attach --plain-http --artifact-type application/spdx+json \
    "127.0.0.1:$port/demo/app@$digest" sbom.spdx.json >/dev/null
  echo "attached an SBOM (application/spdx+json)"

  step "[$kind] What Referee sees"
  referee discover --plain-http "$image"
done

step "A trust policy: trust the demo key's certificate for every repository"
cat > "$work/trustpolicy.json" <<JSON
{"version": "1.0", "trustPolicies": [{
  "name": "demo", "registryScopes": ["*"],
  "signatureVerification": {"level": "strict"},
  "trustStores": ["ca:demo.referee.example"],
  "trustedIdentities": ["*"]}]}
JSON
cat "$work/trustpolicy.json"
store="$XDG_CONFIG_HOME/notation/truststore"   # where notation put the demo certificate

step "Allow: the signed image verifies"
referee verify --plain-http --trust-policy "$work/trustpolicy.json" --trust-store "$store" \
  "127.0.0.1:$ola_port/demo/app:v1"
echo "exit code: $?"

step "Deny: an unsigned image does not"
echo "nobody signed this" > unsigned.txt
"$tools/oras" push --plain-http "127.0.0.1:$ola_port/demo/unsigned:v1" \
  --config config.json:application/vnd.oci.image.config.v1+json \
  unsigned.txt:application/vnd.oci.image.layer.v1.tar >/dev/null
set +e
referee verify --plain-http --trust-policy "$work/trustpolicy.json" --trust-store "$store" \
  "127.0.0.1:$ola_port/demo/unsigned:v1"
echo "exit code: $?"
set -e

step "The admission webhook: referee serve (gunicorn, TLS) with the same trust policy"
echo "tampered" > tampered.txt
tampered_digest=$("$tools/oras" push --plain-http "127.0.0.1:$ola_port/demo/tampered:v1" \
  --config config.json:application/vnd.oci.image.config.v1+json \
  tampered.txt:application/vnd.oci.image.layer.v1.tar --format go-template --template '{{.digest}}')
echo '{"payload":"e30","protected":"e30","header":{"x5c":[]},"signature":"AA"}' > forged.jws
"$tools/oras" attach --plain-http --artifact-type application/vnd.cncf.notary.signature \
  "127.0.0.1:$ola_port/demo/tampered@$tampered_digest" forged.jws:application/jose+json >/dev/null
echo "pushed demo/tampered:v1 with a forged signature attached"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
  -addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout tls.key -out tls.crt 2>/dev/null
hook_port=$(free_port)
cat > config.yaml <<YAML
listen: 127.0.0.1:$hook_port
mode: enforce
trustPolicy: $work/trustpolicy.json
trustStore: $store
registries:
  "127.0.0.1:$ola_port": {plainHTTP: true}
tls: {certFile: $work/tls.crt, keyFile: $work/tls.key}
timeouts: {admissionSeconds: 10}
YAML
"$py" -m webhook serve --config config.yaml >"$work/webhook.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  "$py" -c 'import sys, requests; requests.get(sys.argv[1], verify=sys.argv[2], timeout=1).raise_for_status()' \
    "https://127.0.0.1:$hook_port/readyz" tls.crt >/dev/null 2>&1 && break
  sleep 0.1
done
echo "webhook listening on https://127.0.0.1:$hook_port"
admit() {  # IMAGE: send an AdmissionReview for a pod running IMAGE, print the decision
  "$py" - "$1" "https://127.0.0.1:$hook_port/validate" tls.crt <<'PY'
import json, sys, requests
image, url, ca = sys.argv[1:4]
review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
    "uid": "demo", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "namespace": "default",
    "operation": "CREATE", "object": {"metadata": {"name": "demo"}, "spec": {
        "containers": [{"name": "app", "image": image}]}}}}
answer = requests.post(url, json=review, verify=ca, timeout=30).json()["response"]
print(f"pod with {image}:")
print("  ALLOWED" if answer["allowed"] else f"  DENIED: {answer['status']['message']}")
PY
}
step "Admission: a pod with the signed image"
admit "127.0.0.1:$ola_port/demo/app:v1"
step "Admission: a pod with the unsigned image"
admit "127.0.0.1:$ola_port/demo/unsigned:v1"
step "Admission: a pod with the image whose signature was forged"
admit "127.0.0.1:$ola_port/demo/tampered:v1"

step "In a cluster: the Helm chart applied to a real kube-apiserver, then kubectl apply"
"$root/scripts/cluster.sh" up "$work/cluster" >/dev/null
export KUBECONFIG="$work/cluster/admin.kubeconfig"
echo "kube-apiserver and etcd on loopback (no nodes: pods stay Pending; admission is what counts)"
# The chart's values: this demo's trust policy and certificate, and the webhook configurations
# pointed at the referee serve started above (webhook.url) with its certificate as the CA bundle.
"$py" - "$work/trustpolicy.json" "$store/x509/ca/demo.referee.example/demo.referee.example.crt" \
  tls.crt "https://127.0.0.1:$hook_port" "127.0.0.1:$ola_port" > values.yaml <<'PY'
import json, sys, yaml
policy, cert, ca, url, registry = sys.argv[1:6]
print(yaml.safe_dump({
    "trustPolicy": {"document": json.load(open(policy))},
    "trustStore": {"certificates": {"ca": {"demo.referee.example": open(cert).read()}}},
    "registries": {registry: {"plainHTTP": True}},
    "tls": {"mode": "secret", "secret": {"name": "referee-demo-tls", "caBundle": open(ca).read()}},
    "webhook": {"url": url},
}))
PY
printf '$ helm template referee charts/referee -n referee-system --kube-version %s -f values.yaml | kubectl apply -f -\n' "$KUBERNETES"
"$tools/kubectl" create namespace referee-system >/dev/null
"$tools/helm" template referee "$root/charts/referee" -n referee-system --kube-version "$KUBERNETES" --skip-tests -f values.yaml \
  | "$tools/kubectl" apply -f - | sed 's/^/  /'
"$tools/kubectl" apply -f - >/dev/null <<YAML
{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}
---
{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": "team-a"}}
YAML
kubectl() { printf '$ kubectl %s\n' "$*"; "$tools/kubectl" "$@"; }
set +e
kubectl -n team-a run signed --image="127.0.0.1:$ola_port/demo/app:v1"
kubectl -n team-a run unsigned --image="127.0.0.1:$ola_port/demo/unsigned:v1"
kubectl -n team-a run tampered --image="127.0.0.1:$ola_port/demo/tampered:v1"
set -e

step "The same, as JSON (the contract other tools read)"
referee discover --plain-http --output json "127.0.0.1:$ola_port/demo/app:v1"

step "And what a missing image looks like (exit code 1)"
set +e
referee discover --plain-http "127.0.0.1:$ola_port/demo/app:v2"
echo "exit code: $?"
set -e
echo
echo "Done. Registries, webhook and control plane stopped, demo files removed."
