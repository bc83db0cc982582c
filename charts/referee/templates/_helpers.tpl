{{/* Names, labels and the shared pieces of Referee's objects. */}}

{{/*
Kubernetes 1.30 or later (ValidatingAdmissionPolicy v1, the preStop sleep action), told from the API
server's major and minor version. Not Chart.yaml's kubeVersion: helm checks that against gitVersion,
which an API server built from source without version stamping reports as v0.0.0-master (the
end-to-end suite's is one), while its major and minor are right. `helm template` without a cluster
assumes 1.20: give it --kube-version.
*/}}
{{- define "referee.checkKubeVersion" -}}
{{- $v := .Capabilities.KubeVersion -}}
{{- $version := printf "%s.%s.0" $v.Major (regexReplaceAll "[^0-9]" $v.Minor "") -}}
{{- if not (semverCompare ">=1.30.0-0" $version) -}}
{{- fail (printf "the referee chart needs Kubernetes 1.30 or later, not %s.%s (with helm template, pass --kube-version)" $v.Major $v.Minor) -}}
{{- end -}}
{{- end -}}

{{- define "referee.name" -}}
{{- .Values.nameOverride | default .Chart.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{/* Every object's name (52 characters at most: room for the suffixes added to it). */}}
{{- define "referee.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else if contains (include "referee.name" .) .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "referee.name" .) | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "referee.selectorLabels" -}}
app.kubernetes.io/name: {{ include "referee.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "referee.labels" -}}
{{ include "referee.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "referee.image" -}}
{{- $registry := (.Values.global | default dict).imageRegistry | default "" -}}
{{- $repository := ternary (printf "%s/%s" (trimSuffix "/" $registry) .Values.image.repository) .Values.image.repository (ne $registry "") -}}
{{- if .Values.image.digest -}}
{{ $repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ $repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/* The Service's DNS names: the serving certificate covers every form a client may use. */}}
{{- define "referee.dnsNames" -}}
{{- $svc := include "referee.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- toJson (list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns)) -}}
{{- end -}}

{{/* The host of webhook.url, when set: the serving certificate must name it too. */}}
{{- define "referee.urlHost" -}}
{{- if .Values.webhook.url -}}
{{- regexReplaceAll ":[0-9]+$" (urlParse .Values.webhook.url).host "" | trimPrefix "[" | trimSuffix "]" -}}
{{- end -}}
{{- end -}}

{{- define "referee.tlsSecretName" -}}
{{- if eq .Values.tls.mode "secret" -}}
{{- required "tls.secret.name is required with tls.mode=secret" .Values.tls.secret.name -}}
{{- else -}}
{{- include "referee.fullname" . }}-tls
{{- end -}}
{{- end -}}

{{/*
The self-signed CA and serving certificate, as a dict of PEM strings {ca, cert, key}.
Input: {"root": ., "data": <the data map of an earlier Secret, base64 values>}. When the earlier
data holds all three files they are kept as they are; otherwise a new CA signs a new certificate.
The lookup of the live Secret (on upgrade) and tls.selfSigned.existingData both come through here.
*/}}
{{- define "referee.selfSignedPair" -}}
{{- $root := .root -}}
{{- $data := .data | default dict -}}
{{- if and (index $data "ca.crt") (index $data "tls.crt") (index $data "tls.key") -}}
{{- toJson (dict "ca" (index $data "ca.crt" | b64dec) "cert" (index $data "tls.crt" | b64dec) "key" (index $data "tls.key" | b64dec)) -}}
{{- else -}}
{{- $days := int $root.Values.tls.selfSigned.validityDays -}}
{{- $ca := genCA (printf "%s-ca" (include "referee.fullname" $root)) $days -}}
{{- $dns := include "referee.dnsNames" $root | fromJsonArray -}}
{{- $ips := list -}}
{{- $host := include "referee.urlHost" $root -}}
{{- if $host -}}
{{- if regexMatch "^[0-9.]+$|:" $host -}}
{{- $ips = append $ips $host -}}
{{- else -}}
{{- $dns = append $dns $host -}}
{{- end -}}
{{- end -}}
{{- $cert := genSignedCert (index $dns 2) $ips $dns $days $ca -}}
{{- toJson (dict "ca" $ca.Cert "cert" $cert.Cert "key" $cert.Key) -}}
{{- end -}}
{{- end -}}

{{/*
The TLS material of this render (selfSigned mode), made once and shared by every template that
needs it (the Secret, the webhook configurations, the Provider): Helm renders all templates with
the same .Values, so the first caller stores the result there.
*/}}
{{- define "referee.selfSigned" -}}
{{- if not (hasKey .Values "__refereeTLS") -}}
{{- $data := .Values.tls.selfSigned.existingData -}}
{{- if not $data -}}
{{- $live := lookup "v1" "Secret" .Release.Namespace (include "referee.tlsSecretName" .) -}}
{{- if $live -}}
{{- $data = $live.data -}}
{{- end -}}
{{- end -}}
{{- $_ := set .Values "__refereeTLS" (include "referee.selfSignedPair" (dict "root" . "data" $data) | fromJson) -}}
{{- end -}}
{{- toJson (get .Values "__refereeTLS") -}}
{{- end -}}

{{/* The PEM CA bundle clients verify Referee with; empty when cert-manager injects it. */}}
{{- define "referee.caPEM" -}}
{{- if eq .Values.tls.mode "selfSigned" -}}
{{- (include "referee.selfSigned" . | fromJson).ca -}}
{{- else if eq .Values.tls.mode "secret" -}}
{{- required "tls.secret.caBundle (PEM) is required with tls.mode=secret" .Values.tls.secret.caBundle -}}
{{- end -}}
{{- end -}}

{{/* The clientConfig of a webhook calling PATH. */}}
{{- define "referee.clientConfig" -}}
{{- $root := .root -}}
{{- if $root.Values.webhook.url }}
url: {{ printf "%s%s" (trimSuffix "/" $root.Values.webhook.url) .path | quote }}
{{- else }}
service:
  name: {{ include "referee.fullname" $root }}
  namespace: {{ $root.Release.Namespace }}
  path: {{ .path }}
  port: {{ $root.Values.service.port }}
{{- end }}
{{- with include "referee.caPEM" $root }}
caBundle: {{ b64enc . }}
{{- end }}
{{- end -}}

{{/* The validating webhook's failurePolicy: webhook.failurePolicy, else by mode (audit: Ignore, so
a Referee that is not up yet blocks nothing; enforce: Fail). */}}
{{- define "referee.failurePolicy" -}}
{{- .Values.webhook.failurePolicy | default (ternary "Fail" "Ignore" (eq .Values.mode "enforce")) -}}
{{- end -}}

{{/* cert-manager injects the CA into the webhook configurations from the Certificate. */}}
{{- define "referee.webhookAnnotations" -}}
{{- if eq .Values.tls.mode "certManager" }}
annotations:
  cert-manager.io/inject-ca-from: {{ .Release.Namespace }}/{{ include "referee.fullname" . }}-tls
{{- end }}
{{- end -}}

{{/* Namespaces exempt besides the release's own and exemptNamespaces: kube-system; Gatekeeper's
with gatekeeper.enabled and cert-manager's with tls.mode=certManager, whose images are not signed
by your keys (a refused cert-manager pod stops the renewals Referee's own certificate needs). */}}
{{- define "referee.autoExemptNamespaces" -}}
{{- $names := list "kube-system" -}}
{{- if .Values.gatekeeper.enabled -}}{{- $names = append $names .Values.gatekeeper.namespace -}}{{- end -}}
{{- if eq .Values.tls.mode "certManager" -}}{{- $names = append $names .Values.tls.certManager.namespace -}}{{- end -}}
{{- toJson $names -}}
{{- end -}}

{{/* Namespaces never checked: the release namespace, the automatic ones and exemptNamespaces. */}}
{{- define "referee.exemptNamespaces" -}}
{{- toJson (concat (list .Release.Namespace) (include "referee.autoExemptNamespaces" . | fromJsonArray) .Values.exemptNamespaces | uniq) -}}
{{- end -}}

{{/*
The trust stores an inline trust policy names ("ca:acme") that the values do not provide: a Referee
without them cannot start, and its Fail webhook would refuse pods cluster-wide. Empty when all are
there, when the policy or the store comes from an existing object the chart cannot read (the store
then from its items' paths x509/<type>/<name>/...).
*/}}
{{- define "referee.missingTrustStores" -}}
{{- $text := include "referee.trustPolicyJSON" . -}}
{{- if and $text (not .Values.trustPolicy.existing.kind) -}}
{{- $doc := fromJson $text -}}
{{- if hasKey $doc "Error" -}}
{{- fail (printf "trustPolicy: not valid JSON (%s)" (get $doc "Error")) -}}
{{- end -}}
{{- $have := list -}}
{{- if .Values.trustStore.existing.kind -}}
{{- range .Values.trustStore.existing.items -}}
{{- $parts := splitList "/" .path -}}
{{- if and (ge (len $parts) 3) (eq (index $parts 0) "x509") -}}
{{- $have = append $have (printf "%s:%s" (index $parts 1) (index $parts 2)) -}}
{{- end -}}
{{- end -}}
{{- else -}}
{{- range $type, $stores := .Values.trustStore.certificates -}}
{{- range $name, $_ := $stores -}}
{{- $have = append $have (printf "%s:%s" $type $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $missing := list -}}
{{- range $policy := (get $doc "trustPolicies" | default list) -}}
{{- range $store := (get $policy "trustStores" | default list) -}}
{{- if not (has $store $have) -}}
{{- $missing = append $missing (printf "%s (trust policy %q)" $store (get $policy "name")) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $missing | uniq | join ", " -}}
{{- end -}}
{{- end -}}

{{/* The webhooks' namespaceSelector: never the exempt namespaces or those opted out, and, with
webhook.namespaceSelector, only the namespaces it selects too (an opt-in); webhook.objectSelector
as given. */}}
{{- define "referee.namespaceSelector" -}}
{{- $extra := .Values.webhook.namespaceSelector | default dict -}}
namespaceSelector:
  {{- with $extra.matchLabels }}
  matchLabels:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values: {{ include "referee.exemptNamespaces" . }}
    - key: {{ .Values.webhook.optOutLabel }}
      operator: NotIn
      values: ["true"]
    {{- with $extra.matchExpressions }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- with .Values.webhook.objectSelector }}
objectSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Every kind whose objects run pods, and pods/ephemeralcontainers (kubectl debug). */}}
{{- define "referee.rules" -}}
rules:
  - apiGroups: [""]
    apiVersions: ["v1"]
    operations: ["CREATE", "UPDATE"]
    resources: ["pods", "replicationcontrollers", "podtemplates"]
    scope: Namespaced
  - apiGroups: [""]
    apiVersions: ["v1"]
    operations: ["UPDATE"]
    resources: ["pods/ephemeralcontainers"]
    scope: Namespaced
  - apiGroups: ["apps"]
    apiVersions: ["v1"]
    operations: ["CREATE", "UPDATE"]
    resources: ["deployments", "replicasets", "statefulsets", "daemonsets"]
    scope: Namespaced
  - apiGroups: ["batch"]
    apiVersions: ["v1"]
    operations: ["CREATE", "UPDATE"]
    resources: ["jobs", "cronjobs"]
    scope: Namespaced
{{- end -}}

{{/* The mutating webhook's rules: the resources of mutation.kinds (Pods with their ephemeral
containers), CREATE and UPDATE (on UPDATE Referee pins only the images that changed). */}}
{{- define "referee.mutationRules" -}}
{{- $resources := dict "Pod" (list "" "pods") "PodTemplate" (list "" "podtemplates") "ReplicationController" (list "" "replicationcontrollers") "ReplicaSet" (list "apps" "replicasets") "Deployment" (list "apps" "deployments") "StatefulSet" (list "apps" "statefulsets") "DaemonSet" (list "apps" "daemonsets") "Job" (list "batch" "jobs") "CronJob" (list "batch" "cronjobs") -}}
rules:
{{- range $kind := .Values.mutation.kinds }}
{{- $r := index $resources $kind }}
  - apiGroups: [{{ index $r 0 | quote }}]
    apiVersions: ["v1"]
    operations: ["CREATE", "UPDATE"]
    resources: [{{ index $r 1 | quote }}]
    scope: Namespaced
{{- if eq $kind "Pod" }}
  - apiGroups: [""]
    apiVersions: ["v1"]
    operations: ["UPDATE"]
    resources: ["pods/ephemeralcontainers"]
    scope: Namespaced
{{- end }}
{{- end }}
{{- end -}}

{{/* A stable file name for a registry host (hosts carry ':' and are not valid key names). */}}
{{- define "referee.hostKey" -}}
{{- . | sha256sum | trunc 12 -}}
{{- end -}}

{{/* The trust policy as JSON text: trustPolicy.json (a file's text, --set-file) or trustPolicy.document. */}}
{{- define "referee.trustPolicyJSON" -}}
{{- if .Values.trustPolicy.json -}}
{{- .Values.trustPolicy.json | trim -}}
{{- else if .Values.trustPolicy.document -}}
{{- toJson .Values.trustPolicy.document -}}
{{- end -}}
{{- end -}}

{{/* "true" when a trust policy is given: without one Referee does not run and nothing is enforced.
A policy naming a trust store the values do not provide fails the render, naming the store. */}}
{{- define "referee.configured" -}}
{{- with include "referee.missingTrustStores" . -}}
{{- fail (printf "trustPolicy names trust stores that trustStore does not provide: %s. Add each as trustStore.certificates.<type>.<name> (e.g. --set-file trustStore.certificates.ca.acme=acme-root.pem), or fix the policy's trustStores; Referee would not start without them" .) -}}
{{- end -}}
{{- if or .Values.trustPolicy.existing.kind (include "referee.trustPolicyJSON" .) -}}true{{- end -}}
{{- end -}}

{{/*
Projected volume sources of the trust folder: policy/trustpolicy.json and truststore/x509/<type>/<name>/.
The kubelet mounts each top-level entry of such a volume as a symbolic link (into ..data/), and
Referee refuses symbolic links as trust files, so every file sits one folder down.
*/}}
{{- define "referee.trustSources" -}}
{{- $name := include "referee.fullname" . -}}
{{- $policy := .Values.trustPolicy.existing -}}
{{- if $policy.kind }}
- {{ $policy.kind | untitle }}:
    name: {{ required "trustPolicy.existing.name is required with trustPolicy.existing.kind" $policy.name }}
    items:
      - {key: {{ $policy.key | quote }}, path: policy/trustpolicy.json}
{{- else }}
- secret:
    name: {{ $name }}-trust
    items:
      - {key: trustpolicy.json, path: policy/trustpolicy.json}
{{- end }}
{{- $store := .Values.trustStore.existing -}}
{{- if $store.kind }}
- {{ $store.kind | untitle }}:
    name: {{ required "trustStore.existing.name is required with trustStore.existing.kind" $store.name }}
    items:
      {{- range required "trustStore.existing.items is required with trustStore.existing.kind" $store.items }}
      - {key: {{ .key | quote }}, path: {{ printf "truststore/%s" .path | quote }}}
      {{- end }}
{{- else if .Values.trustStore.certificates }}
- secret:
    name: {{ $name }}-trust
    items:
      {{- range $type, $stores := .Values.trustStore.certificates }}
      {{- range $store, $_ := $stores }}
      - {key: {{ printf "%s.%s.pem" $type $store | quote }}, path: {{ printf "truststore/x509/%s/%s/certificates.pem" $type $store | quote }}}
      {{- end }}
      {{- end }}
{{- end }}
{{- end -}}

{{/* Projected volume sources of the registries folder: each dockerConfigSecret as <host key>/config.json. */}}
{{- define "referee.pullSecretSources" -}}
{{- range $host, $r := .Values.registries }}
{{- with $r.dockerConfigSecret }}
- secret:
    name: {{ . }}
    items:
      - {key: .dockerconfigjson, path: {{ printf "%s/config.json" (include "referee.hostKey" $host) | quote }}}
{{- end }}
{{- end }}
{{- end -}}

{{/* One document, by kind, of a multi-document file under files/. */}}
{{- define "referee.gatekeeperDoc" -}}
{{- include "referee.gatekeeperDocs" . | fromJsonArray | first | toYaml -}}
{{- end -}}

{{/* Every document of a kind in a multi-document file under files/, as a JSON list. */}}
{{- define "referee.gatekeeperDocs" -}}
{{- $kind := .kind -}}
{{- $docs := list -}}
{{- range (.root.Files.Get .file | splitList "\n---\n") -}}
{{- $doc := fromYaml . -}}
{{- if eq (get $doc "kind") $kind -}}
{{- $docs = append $docs $doc -}}
{{- end -}}
{{- end -}}
{{- toJson $docs -}}
{{- end -}}

{{/* Namespaces the Gatekeeper constraints and Assigns leave out: those the webhooks exempt, and
Gatekeeper's own. */}}
{{- define "referee.gatekeeperExcluded" -}}
{{- toJson (concat (include "referee.exemptNamespaces" . | fromJsonArray) (list .Values.gatekeeper.namespace) | uniq) -}}
{{- end -}}

{{/* The constraints' enforcementAction: gatekeeper.constraints.enforcementAction, else by mode. */}}
{{- define "referee.enforcementAction" -}}
{{- .Values.gatekeeper.constraints.enforcementAction | default (ternary "deny" "warn" (eq .Values.mode "enforce")) -}}
{{- end -}}

{{/* The https URL Gatekeeper calls: this release's Service (or webhook.url) and PATH. */}}
{{- define "referee.providerURL" -}}
{{- $root := .root -}}
{{- if $root.Values.webhook.url -}}
{{- printf "%s%s" (trimSuffix "/" $root.Values.webhook.url) .path -}}
{{- else -}}
{{- printf "https://%s.%s:%d%s" (include "referee.fullname" $root) $root.Release.Namespace (int $root.Values.service.port) .path -}}
{{- end -}}
{{- end -}}

{{/* The Provider's caBundle (base64 PEM): gatekeeper.caBundle, else the CA of Referee's certificate. */}}
{{- define "referee.providerCABundle" -}}
{{- if .Values.gatekeeper.caBundle -}}
{{- .Values.gatekeeper.caBundle -}}
{{- else if ne .Values.tls.mode "certManager" -}}
{{- include "referee.caPEM" . | b64enc -}}
{{- else -}}
{{- $live := lookup "v1" "Secret" .Release.Namespace (include "referee.tlsSecretName" .) -}}
{{- $ca := "" -}}
{{- if $live -}}{{- $ca = index ($live.data | default dict) "ca.crt" | default "" -}}{{- end -}}
{{- required "gatekeeper.caBundle is required with tls.mode=certManager until cert-manager has issued the certificate (cert-manager cannot inject a Provider's caBundle): set it, or upgrade once the Secret exists" $ca -}}
{{- end -}}
{{- end -}}

{{/* --- Scaling out: the shared verdict cache, the bundled Redis, the replica count ------------ */}}

{{/* Labels of the bundled Redis's pods: a name of their own, so that none of Referee's selectors
(its Service, Deployment, PodDisruptionBudget, NetworkPolicy) ever picks a Redis pod. */}}
{{- define "referee.redisSelectorLabels" -}}
app.kubernetes.io/name: {{ include "referee.name" . }}-redis
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: shared-cache
{{- end -}}

{{- define "referee.redisLabels" -}}
{{ include "referee.redisSelectorLabels" . }}
app.kubernetes.io/part-of: {{ include "referee.name" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The bundled Redis's Service, Deployment and password Secret: <fullname>-redis. */}}
{{- define "referee.redisName" -}}
{{- include "referee.fullname" . }}-redis
{{- end -}}

{{- define "referee.redisImage" -}}
{{- $image := .Values.redis.image -}}
{{- if $image.digest -}}
{{ $image.repository }}@{{ $image.digest }}
{{- else -}}
{{ $image.repository }}:{{ $image.tag }}
{{- end -}}
{{- end -}}

{{/* The shared cache's Redis URL: cache.shared.url when given, else the bundled Redis's
(redis://<fullname>-redis:6379/0) with redis.enabled, else "" (no shared cache). */}}
{{- define "referee.sharedCacheURL" -}}
{{- $url := dig "shared" "url" "" (.Values.cache | default dict) -}}
{{- if $url -}}
{{- $url -}}
{{- else if .Values.redis.enabled -}}
{{- printf "redis://%s:6379/0" (include "referee.redisName" .) -}}
{{- end -}}
{{- end -}}

{{/* "true" when Referee uses a shared cache (cache.shared.url set, or redis.enabled). */}}
{{- define "referee.sharedCacheEnabled" -}}
{{- if include "referee.sharedCacheURL" . -}}true{{- end -}}
{{- end -}}

{{/* The Secret holding the shared cache's Redis password, as JSON {"name": …, "key": …} (name ""
when there is none): the bundled Redis's <fullname>-redis (key password) when Referee uses it,
else cache.shared.passwordSecret. */}}
{{- define "referee.sharedCachePasswordSecret" -}}
{{- $given := dig "shared" "passwordSecret" dict (.Values.cache | default dict) -}}
{{- if and .Values.redis.enabled (not (dig "shared" "url" "" (.Values.cache | default dict))) -}}
{{- toJson (dict "name" (include "referee.redisName" .) "key" "password") -}}
{{- else -}}
{{- toJson (dict "name" (get $given "name" | default "") "key" (get $given "key" | default "password")) -}}
{{- end -}}
{{- end -}}

{{/* The Secret (key signing-key) holding the key every shared verdict is signed with:
cache.shared.signingKeySecret.name, else the generated <fullname>-shared-cache-key. "" without a
shared cache. */}}
{{- define "referee.sharedCacheSigningKeySecret" -}}
{{- if include "referee.sharedCacheEnabled" . -}}
{{- dig "shared" "signingKeySecret" "name" "" (.Values.cache | default dict) | default (printf "%s-shared-cache-key" (include "referee.fullname" .)) -}}
{{- end -}}
{{- end -}}

{{/*
A generated secret value kept across upgrades: the live Secret's data[key] (base64) when the
Secret exists (lookup, on upgrade), else a fresh one from the "fresh" argument (base64). Input:
{"root": ., "name": <Secret name>, "key": <data key>, "fresh": <base64 value>}.
*/}}
{{- define "referee.keptSecretValue" -}}
{{- $live := lookup "v1" "Secret" .root.Release.Namespace .name -}}
{{- $kept := "" -}}
{{- if $live -}}{{- $kept = index ($live.data | default dict) .key | default "" -}}{{- end -}}
{{- $kept | default .fresh -}}
{{- end -}}

{{/* The fewest Referee replicas there will be: autoscaling.minReplicas with the autoscaler,
else replicaCount. The PodDisruptionBudget is made against it. */}}
{{- define "referee.minReplicas" -}}
{{- if .Values.autoscaling.enabled -}}
{{- .Values.autoscaling.minReplicas -}}
{{- else -}}
{{- .Values.replicaCount -}}
{{- end -}}
{{- end -}}

{{/* The bundled Redis's configuration, but its password (added in the Secret): a cache only,
nothing written to disk, memory bounded, oldest keys evicted first. */}}
{{- define "referee.redisConfig" -}}
port 6379
protected-mode yes
save ""
appendonly no
maxmemory {{ int .Values.redis.maxMemoryMebibytes }}mb
maxmemory-policy allkeys-lru
maxclients {{ int .Values.redis.maxClients }}
{{- end -}}

{{/* The projected sources of the shared-cache volume (mounted at <mountRoot>/shared-cache): the
signing key, the Redis password when there is one, the CA of a rediss:// server when given. */}}
{{- define "referee.sharedCacheSources" -}}
{{- $shared := .Values.cache.shared -}}
{{- $password := include "referee.sharedCachePasswordSecret" . | fromJson -}}
- secret:
    name: {{ include "referee.sharedCacheSigningKeySecret" . }}
    items:
      - {key: signing-key, path: signing-key}
{{- with $password.name }}
- secret:
    name: {{ . }}
    items:
      - {key: {{ $password.key }}, path: password}
{{- end }}
{{- with $shared.caSecret.name }}
- secret:
    name: {{ . }}
    items:
      - {key: {{ $shared.caSecret.key }}, path: ca.crt}
{{- end }}
{{- end -}}
