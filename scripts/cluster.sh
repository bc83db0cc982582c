#!/usr/bin/env bash
# A real Kubernetes control plane for the end-to-end tests: etcd, kube-apiserver and
# kube-controller-manager (its Deployment and ReplicaSet controllers only) on 127.0.0.1; no
# scheduler or kubelet (pods stay Pending; admission, and what controllers create, is what is tested).
#
#   scripts/cluster.sh build      build kube-apiserver, kubectl, etcd and kube-controller-manager
#                                 into .tools/bin (idempotent)
#   scripts/cluster.sh up DIR     generate a PKI in DIR, start etcd, kube-apiserver and
#                                 kube-controller-manager on free ports, wait until they answer,
#                                 write DIR/admin.kubeconfig
#                                 The API server presents a client certificate to every admission
#                                 webhook it calls (DIR/pki/webhook-client.crt, issued by
#                                 DIR/pki/webhook-client-ca.crt), as its AdmissionConfiguration
#                                 (DIR/admission.yaml) says. Reads of Secrets and
#                                 ServiceAccounts are recorded in DIR/audit.log (the API server's
#                                 audit log, JSON lines), so tests can see who read which.
#   scripts/cluster.sh down DIR   stop what 'up DIR' started (safe to repeat)
#
# Versions come from scripts/versions.env (KUBERNETES, ETCD).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# ---------------------------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------------------------
# k8s.io/kubernetes requires its staging modules (k8s.io/api, k8s.io/client-go, ...) at v0.0.0 and
# replaces them with ./staging/src/..., so 'go install k8s.io/kubernetes/cmd/...@v1.X.Y' refuses it.
# A scratch module requires k8s.io/kubernetes and replaces each staging module its go.mod names with
# the published v0.X.Y of the same release. etcd's server module is already in that module graph
# (the apiserver links its client), so the same module builds it at the version Kubernetes uses.
stamp=$root/.tools/bin/.control-plane.version
want="kubernetes $KUBERNETES etcd $ETCD"

build_present() {
  local bin=$root/.tools/bin
  [ -x "$bin/kube-apiserver" ] && [ -x "$bin/kubectl" ] && [ -x "$bin/etcd" ] \
    && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]
}

# A scratch module in DIR requiring k8s.io/kubernetes $KUBERNETES, each staging module replaced by
# its published v0.X.Y. Runs inside DIR.
scratch_module() {  # DIR
  local mod=$1 staging=v0.${KUBERNETES#v1.}
  rm -rf "$mod" && mkdir -p "$mod"
  cd "$mod"
  go mod init "referee.local/tools/$(basename "$mod")" >/dev/null 2>&1
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  [ -f "$gomod" ] || die "could not download k8s.io/kubernetes $KUBERNETES"
  local edits=() name
  for name in $(sed -n 's|^[[:space:]]*k8s.io/\([a-z0-9-]*\) => ./staging/src/k8s.io/\1$|\1|p' "$gomod"); do
    edits+=("-replace=k8s.io/$name=k8s.io/$name@$staging")
  done
  [ ${#edits[@]} -gt 0 ] || die "no staging modules found in $gomod"
  go mod edit "${edits[@]}" "-require=k8s.io/kubernetes@$KUBERNETES"
}

build() {
  build_control_plane
  build_controller_manager
}

build_control_plane() {
  local bin=$root/.tools/bin
  if build_present; then
    log "kube-apiserver, kubectl $KUBERNETES and etcd $ETCD present"; return
  fi
  command -v go >/dev/null || die "go not found; it is needed to build the control plane"
  log "building kube-apiserver, kubectl $KUBERNETES and etcd $ETCD (the first build takes long; later ones use Go's caches)"
  mkdir -p "$bin"
  (
    scratch_module "$root/.tools/src/kubernetes"
    go mod edit "-require=go.etcd.io/etcd/server/v3@$ETCD"
    go get "k8s.io/kubernetes/cmd/kube-apiserver@$KUBERNETES" "k8s.io/kubernetes/cmd/kubectl@$KUBERNETES" \
      "go.etcd.io/etcd/server/v3@$ETCD" 2>get.log || { cat get.log >&2; exit 1; }
    # The versions 'go get' settled on must be the pinned ones: an ETCD older than the one this
    # Kubernetes requires would make it downgrade Kubernetes, a newer one could raise its deps.
    local got
    for got in "k8s.io/kubernetes $KUBERNETES" "go.etcd.io/etcd/server/v3 $ETCD"; do
      [ "$(go list -m -f '{{.Version}}' "${got% *}")" = "${got#* }" ] || die "${got% *} resolved to \
$(go list -m -f '{{.Version}}' "${got% *}"), not ${got#* }: set ETCD in scripts/versions.env to the etcd \
version k8s.io/kubernetes $KUBERNETES requires (its go.mod)"
    done
    # One 'go build' for all three links them in parallel and compiles shared packages once.
    mkdir -p out
    CGO_ENABLED=0 go build -trimpath -o out/ \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl go.etcd.io/etcd/server/v3
    mv out/kube-apiserver out/kubectl "$bin/"
    mv out/server "$bin/etcd"
  ) || die "could not build the control plane"
  printf '%s\n' "$want" > "$stamp"
}

# kube-controller-manager: the Deployment and ReplicaSet controllers of the rollout tests. Its own
# scratch module and stamp, so adding it leaves the binaries above (and their stamp) as they are.
cm_stamp=$root/.tools/bin/.kube-controller-manager.version
cm_want="kubernetes $KUBERNETES"

controller_manager_present() {
  [ -x "$root/.tools/bin/kube-controller-manager" ] && [ "$(cat "$cm_stamp" 2>/dev/null)" = "$cm_want" ]
}

build_controller_manager() {
  local bin=$root/.tools/bin
  if controller_manager_present; then
    log "kube-controller-manager $KUBERNETES present"; return
  fi
  command -v go >/dev/null || die "go not found; it is needed to build kube-controller-manager"
  log "building kube-controller-manager $KUBERNETES (minutes; Go's caches from the build above help)"
  mkdir -p "$bin"
  (
    scratch_module "$root/.tools/src/kube-controller-manager"
    go get "k8s.io/kubernetes/cmd/kube-controller-manager@$KUBERNETES" 2>get.log || { cat get.log >&2; exit 1; }
    [ "$(go list -m -f '{{.Version}}' k8s.io/kubernetes)" = "$KUBERNETES" ] \
      || die "k8s.io/kubernetes resolved to $(go list -m -f '{{.Version}}' k8s.io/kubernetes), not $KUBERNETES"
    mkdir -p out
    CGO_ENABLED=0 go build -trimpath -o out/ k8s.io/kubernetes/cmd/kube-controller-manager
    mv out/kube-controller-manager "$bin/kube-controller-manager.new"
    mv "$bin/kube-controller-manager.new" "$bin/kube-controller-manager"
  ) || die "could not build kube-controller-manager"
  printf '%s\n' "$cm_want" > "$cm_stamp"
}

# ---------------------------------------------------------------------------------------------
# up / down
# ---------------------------------------------------------------------------------------------
# DIR holds everything: pki/, etcd/ (data), *.log, *.pid, admin.kubeconfig and 'server' (the URL).

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# The pid in DIR/NAME.pid, when that process is still the NAME this script started.
running_pid() {  # DIR NAME
  local pid
  pid=$(cat "$1/$2.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "$root/.tools/bin/$2 " || return 1
  printf '%s\n' "$pid"
}

alive() {  # PID: running (an exited child of this shell lingers as a zombie until reaped)
  [ -r "/proc/$1/stat" ] && [ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != Z ]
}

# Start NAME (a binary in .tools/bin) detached from this shell, its output in DIR/NAME.log.
start() {  # DIR NAME ARGS...
  local dir=$1 name=$2; shift 2
  setsid "$root/.tools/bin/$name" "$@" </dev/null >"$dir/$name.log" 2>&1 &
  printf '%s\n' "$!" > "$dir/$name.pid"
  # Until the forked shell has exec'd the program, /proc shows the shell: wait for the program.
  local i
  for ((i = 0; i < 50; i++)); do
    running_pid "$dir" "$name" >/dev/null && return 0
    alive "$!" || break
    sleep 0.1
  done
  running_pid "$dir" "$name" >/dev/null || { show_log "$dir" "$name"; die "$name did not start"; }
}

show_log() {  # DIR NAME: the errors and the last lines of NAME's log
  [ -f "$1/$2.log" ] || return 0
  { grep -E '^(E[0-9]{4}|F[0-9]{4})|"level":"(error|fatal|panic)"' "$1/$2.log" | tail -n 10
    tail -n 5 "$1/$2.log"; } >&2 || true
}

wait_for() {  # DIR NAME SECONDS CURL-ARGS...: until the URL answers 200, or NAME exits
  local dir=$1 name=$2 seconds=$3 i; shift 3
  for ((i = 0; i < seconds * 5; i++)); do
    running_pid "$dir" "$name" >/dev/null || { show_log "$dir" "$name"; die "$name exited"; }
    curl -fsS -o /dev/null --max-time 2 "$@" 2>/dev/null && return 0
    sleep 0.2
  done
  show_log "$dir" "$name"
  die "$name not ready after ${seconds}s"
}

pki() {  # DIR: CA, apiserver serving certificate, admin client certificate, service-account key,
         # and the CA and client certificate the API server presents to webhooks
  local p=$1/pki
  rm -rf "$p" && mkdir -p "$p"
  ( cd "$p"
    ec() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
    ec ca.key
    openssl req -x509 -new -key ca.key -out ca.crt -days 7 -subj "/CN=referee-e2e-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"
    issue() {  # STEM SUBJECT EXTENSIONS
      ec "$1.key"
      openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
      printf '%s\n' "$3" > "$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 7 \
        -extfile "$1.ext" -out "$1.crt" 2>/dev/null
      rm -f "$1.csr" "$1.ext"
    }
    issue apiserver "/CN=kube-apiserver" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
    # The admin: group system:masters, which RBAC's bootstrap policy binds to cluster-admin.
    issue admin "/O=system:masters/CN=referee-e2e-admin" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
    # The client certificate the API server presents to admission webhooks, from a CA of its own:
    # a webhook that trusts this CA trusts the API server's calls, and no other client of the
    # cluster (the admin above has a certificate of the cluster CA, not of this one).
    ec webhook-client-ca.key
    openssl req -x509 -new -key webhook-client-ca.key -out webhook-client-ca.crt -days 7 \
      -subj "/CN=referee-e2e-webhook-client-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"
    ec webhook-client.key
    openssl req -new -key webhook-client.key -subj "/CN=kube-apiserver-webhook-client" -out webhook-client.csr
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
      "extendedKeyUsage=clientAuth" > webhook-client.ext
    openssl x509 -req -in webhook-client.csr -CA webhook-client-ca.crt -CAkey webhook-client-ca.key \
      -CAcreateserial -days 7 -extfile webhook-client.ext -out webhook-client.crt 2>/dev/null
    rm -f webhook-client.csr webhook-client.ext
    # Signs and verifies service-account tokens (the TokenRequest API: 'kubectl create token').
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
    openssl pkey -in sa.key -pubout -out sa.pub
  ) || die "could not generate the PKI in $p"
}

# The audit policy: who read or wrote Secrets and ServiceAccounts (metadata only, never their
# contents); nothing else is recorded.
audit_policy() {  # DIR
  cat > "$1/audit-policy.yaml" <<EOF
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    resources:
      - group: ""
        resources: ["secrets", "serviceaccounts"]
  - level: None
EOF
}

# The API server's AdmissionConfiguration: both webhook plugins read DIR/webhook-client.kubeconfig,
# whose one user, "*", matches every webhook host (the suite's webhooks listen on loopback ports
# chosen at run time), so every webhook call presents the client certificate.
admission_config() {  # DIR
  local dir=$1 p=$1/pki
  cat > "$dir/webhook-client.kubeconfig" <<EOF
apiVersion: v1
kind: Config
users:
  - name: "*"
    user:
      client-certificate: $p/webhook-client.crt
      client-key: $p/webhook-client.key
EOF
  cat > "$dir/admission.yaml" <<EOF
apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
  - name: ValidatingAdmissionWebhook
    configuration:
      apiVersion: apiserver.config.k8s.io/v1
      kind: WebhookAdmissionConfiguration
      kubeConfigFile: $dir/webhook-client.kubeconfig
  - name: MutatingAdmissionWebhook
    configuration:
      apiVersion: apiserver.config.k8s.io/v1
      kind: WebhookAdmissionConfiguration
      kubeConfigFile: $dir/webhook-client.kubeconfig
EOF
}

up() {
  local dir
  mkdir -p "$1" && dir=$(cd "$1" && pwd)
  if running_pid "$dir" kube-apiserver >/dev/null && running_pid "$dir" etcd >/dev/null \
      && running_pid "$dir" kube-controller-manager >/dev/null && [ -f "$dir/admin.kubeconfig" ]; then
    log "already up: $(cat "$dir/server")"; return
  fi
  down "$dir"  # a half-started cluster: start afresh
  # A failed start leaves nothing running. Expanded now: $dir is local, gone when the trap runs.
  # shellcheck disable=SC2064
  trap "down $(printf '%q' "$dir")" EXIT
  build_present || die "the control plane is not built: run scripts/cluster.sh build"
  controller_manager_present || die "kube-controller-manager is not built: run scripts/cluster.sh build"
  pki "$dir"
  local etcd_port peer_port api_port
  etcd_port=$(free_port); peer_port=$(free_port); api_port=$(free_port)
  rm -rf "$dir/etcd"
  # One member on loopback, plain HTTP (no other process can reach it); no fsync: a test cluster.
  start "$dir" etcd --name e2e --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "e2e=http://127.0.0.1:$peer_port" --unsafe-no-fsync --log-level warn
  wait_for "$dir" etcd 30 "http://127.0.0.1:$etcd_port/health"
  local p=$dir/pki
  admission_config "$dir"
  audit_policy "$dir"
  # ServiceAccount admission stays on (as in every cluster): it gives pods the namespace's
  # "default" service account, which tests/helpers/cluster.py creates with each namespace since the
  # controller manager here runs no service-account controller.
  start "$dir" kube-apiserver \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" \
    --client-ca-file "$p/ca.crt" --cert-dir "$p" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$p/sa.pub" --service-account-signing-key-file "$p/sa.key" \
    --service-cluster-ip-range 10.0.0.0/24 \
    --authorization-mode RBAC --endpoint-reconciler-type none \
    --enable-admission-plugins NamespaceLifecycle,ServiceAccount,MutatingAdmissionWebhook,ValidatingAdmissionWebhook \
    --admission-control-config-file "$dir/admission.yaml" \
    --audit-policy-file "$dir/audit-policy.yaml" --audit-log-path "$dir/audit.log" --audit-log-maxbackup 1 \
    --profiling=false
  local server=https://127.0.0.1:$api_port
  wait_for "$dir" kube-apiserver 90 --cacert "$p/ca.crt" --cert "$p/admin.crt" --key "$p/admin.key" "$server/readyz"
  local kc=$dir/admin.kubeconfig kubectl=$root/.tools/bin/kubectl
  rm -f "$kc"
  "$kubectl" --kubeconfig "$kc" config set-cluster e2e --server "$server" --certificate-authority "$p/ca.crt" --embed-certs >/dev/null
  "$kubectl" --kubeconfig "$kc" config set-credentials admin --client-certificate "$p/admin.crt" --client-key "$p/admin.key" --embed-certs >/dev/null
  "$kubectl" --kubeconfig "$kc" config set-context e2e --cluster e2e --user admin >/dev/null
  "$kubectl" --kubeconfig "$kc" config use-context e2e >/dev/null
  "$kubectl" --kubeconfig "$kc" create serviceaccount default -n default >/dev/null
  controller_manager "$dir" "$server"
  printf '%s\n' "$server" > "$dir/server"
  trap - EXIT
  log "up: $server (kubeconfig $kc)"
}

# The Deployment and ReplicaSet controllers (a rollout creates and scales ReplicaSets, whose Pods
# then go through admission), with a client certificate of their own. Only those two: no
# service-account, namespace or garbage-collector controllers run, as before.
controller_manager() {  # DIR SERVER
  local dir=$1 server=$2 p=$1/pki kubectl=$root/.tools/bin/kubectl port
  ( cd "$p"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out controller-manager.key 2>/dev/null
    # system:masters: one identity for both controllers (no per-controller service accounts here).
    openssl req -new -key controller-manager.key -subj "/O=system:masters/CN=system:kube-controller-manager" \
      -out controller-manager.csr
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
      "extendedKeyUsage=clientAuth" > controller-manager.ext
    openssl x509 -req -in controller-manager.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 7 \
      -extfile controller-manager.ext -out controller-manager.crt 2>/dev/null
    rm -f controller-manager.csr controller-manager.ext
  ) || die "could not issue the controller manager's certificate"
  local kc=$dir/controller-manager.kubeconfig
  rm -f "$kc"
  "$kubectl" --kubeconfig "$kc" config set-cluster e2e --server "$server" --certificate-authority "$p/ca.crt" --embed-certs >/dev/null
  "$kubectl" --kubeconfig "$kc" config set-credentials controller-manager --client-certificate "$p/controller-manager.crt" \
    --client-key "$p/controller-manager.key" --embed-certs >/dev/null
  "$kubectl" --kubeconfig "$kc" config set-context e2e --cluster e2e --user controller-manager >/dev/null
  "$kubectl" --kubeconfig "$kc" config use-context e2e >/dev/null
  port=$(free_port)
  start "$dir" kube-controller-manager --kubeconfig "$kc" \
    --controllers deployment-controller,replicaset-controller \
    --leader-elect=false --use-service-account-credentials=false \
    --bind-address 127.0.0.1 --secure-port "$port" --cert-dir "$dir/controller-manager-certs" \
    --profiling=false
  wait_for "$dir" kube-controller-manager 60 --insecure "https://127.0.0.1:$port/healthz"
}

stop() {  # DIR NAME: TERM, then KILL after 10 s
  local pid i
  pid=$(running_pid "$1" "$2") || { rm -f "$1/$2.pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$1/$2.pid"
}

down() {
  [ -d "$1" ] || return 0
  stop "$1" kube-controller-manager
  stop "$1" kube-apiserver
  stop "$1" etcd
  rm -f "$1/server"
}

usage() { die "usage: scripts/cluster.sh build | up DIR | down DIR"; }

case ${1:-} in
  build) build ;;
  up) [ $# -eq 2 ] || usage; up "$2" ;;
  down) [ $# -eq 2 ] || usage; down "$2" ;;
  *) usage ;;
esac
