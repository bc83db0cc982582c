"""The chart rendered by the real `helm`: lint, Kubernetes schemas, and what the objects must say."""

from __future__ import annotations

import base64
import ipaddress
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from tests.chart.conftest import deep_merge
from tests.helpers.chart import (
    CHART,
    KUBE_VERSION,
    NAMESPACE,
    RELEASE,
    Rendered,
    container_env,
    crd_typed,
    helm,
    render,
    template,
    values_file,
)
from tests.helpers.tools import ROOT, run, tool
from webhook.config import parse_config
from webhook.server import admission
from webhook.verify.policy import parse_policy_document

# The Kubernetes versions the chart claims (charts/referee/README.md); kubernetes-validate carries
# their schemas offline.
KUBERNETES_VERSIONS = [f"1.{minor}" for minor in range(30, 38)]


# --- helm lint and the schema of the values -------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    ["defaults", "selfSigned", "certManager", "certManagerIssuer", "secret", "mutation", "gatekeeper", "url",
     "audit", "pullSecrets", "pullSecretsUnauthenticated", "hardened", "extras", "existingTrust",
     "gatekeeperCertManager", "networkPolicySources", "scaleOut"],
)  # fmt: skip
def test_helm_lint_strict(case: str, value_files: dict[str, Path]) -> None:
    proc = helm("lint", "--strict", str(CHART), "--namespace", NAMESPACE, "--values", str(value_files[case]))
    assert "1 chart(s) linted, 0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize(
    ("setting", "phrase"),
    [
        ("tpyo=1", "tpyo"),
        ("webhook.timeoutSecond=5", "timeoutSecond"),
        ("webhook.timeoutSeconds=31", "maximum"),
        ("mode=permissive", "mode"),
        ("tls.mode=none", "mode"),
        ("replicaCount=two", "replicaCount"),
        ("webhook.url=http://127.0.0.1:8443", "url"),
        ("networkPolicy.apiServerCIDRs={10.0.0.1}", "apiServerCIDRs"),
        ("gatekeeper.namespace=Gatekeeper", "namespace"),
        ("gatekeeper.constraints.enforcementAction=block", "enforcementAction"),
        ("requireDigest=yes", "requireDigest"),
        ("cache.deniedTTLSeconds=0", "deniedTTLSeconds"),
        ("allowedRegistries={registry.example.com/apps}", "allowedRegistries"),
        ("tls.admissionClientNames=kube-apiserver", "admissionClientNames"),
        ("pullSecrets.trustUnauthenticatedCallers=maybe", "trustUnauthenticatedCallers"),
        ("mutation.kinds={Pods}", "kinds"),
        ("autoscaling.minReplicas=0", "minReplicas"),
        ("autoscaling.maxReplicas=five", "maxReplicas"),
        ("autoscaling.targetCPUUtilizationPercentage=101", "targetCPUUtilizationPercentage"),
        ("autoscaling.enabled=yes", "enabled"),
        ("autoscaling.maxReplica=5", "maxReplica"),
        ("topologySpreadConstraints[0].whenUnsatisfiable=Sometimes", "whenUnsatisfiable"),
        ("topologySpreadConstraints[0].maxSkew=0", "maxSkew"),
        ("redis.enabled=1", "enabled"),
        ("redis.image.tag=", "tag"),
        ("redis.image.digest=sha256:abc", "digest"),
        ("redis.maxMemoryMebibytes=lots", "maxMemoryMebibytes"),
        ("redis.password=hunter2", "password"),
    ],
)
def test_schema_rejects_unknown_keys_and_wrong_values(setting: str, phrase: str) -> None:
    proc = template(None, "--set", setting, check=False)
    assert proc.returncode != 0, f"helm template accepted --set {setting}"
    assert phrase in proc.stderr and "values don't meet the specifications of the schema" in proc.stderr


def test_the_rendered_configuration_is_one_referee_accepts(rendered: dict[str, Rendered]) -> None:
    for name, out in rendered.items():
        [container] = out.get("Deployment", RELEASE)["spec"]["template"]["spec"]["containers"]
        environ = container_env(container, NAMESPACE)
        config = parse_config(out.config(), base=Path("/etc/referee/config"), environ=environ)
        assert str(config.trust_policy).startswith("/etc/referee/trust/"), name
        assert config.namespace == NAMESPACE, name


def test_referees_own_namespace_is_the_release_namespace_wherever_it_is_installed(
    cases: dict[str, Any], tmp_path: Path
) -> None:
    """The chart writes no namespace into config.yaml; Referee reads the pod's own from
    POD_NAMESPACE (the downward API), so a release outside referee-system exempts its own
    namespace and not referee-system."""
    text = template(values_file(tmp_path, cases["selfSigned"]), "--namespace", "security").stdout
    out = Rendered(tuple(d for d in yaml.safe_load_all(text) if d), text)
    assert "namespace" not in out.config()
    [container] = out.one("Deployment")["spec"]["template"]["spec"]["containers"]
    config = parse_config(out.config(), base=Path("/etc/referee/config"),
                          environ=container_env(container, "security"))  # fmt: skip
    assert config.namespace == "security"


# --- Kubernetes schemas ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def builtin_files(rendered: dict[str, Rendered], tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Per case, the rendered objects of built-in kinds (the CRD-typed ones are checked in test_crds)."""
    directory = tmp_path_factory.mktemp("builtin")
    files = []
    for name, out in rendered.items():
        path = directory / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all([o for o in out.objects if not crd_typed(o)]))
        files.append(path)
    return files


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_objects_match_the_kubernetes_schemas_strictly(version: str, builtin_files: list[Path]) -> None:
    validate = str(ROOT / ".venv" / "bin" / "kubernetes-validate")
    proc = run([validate, "--strict", "--quiet", "-k", version, *map(str, builtin_files)], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Couldn't find schema" not in proc.stdout + proc.stderr


def test_kubernetes_validate_catches_an_unknown_field(tmp_path: Path, rendered: dict[str, Rendered]) -> None:
    """The check above can fail: the same Deployment with one misplaced field is refused."""
    deployment = rendered["selfSigned"].one("Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFileSystem"] = True
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(deployment))
    validate = str(ROOT / ".venv" / "bin" / "kubernetes-validate")
    proc = run([validate, "--strict", "--quiet", "-k", "1.30", str(path)], check=False)
    assert proc.returncode != 0 and "readOnlyRootFileSystem" in proc.stdout + proc.stderr


# --- TLS: the CA bundle signs the serving certificate ---------------------------------------------


def certificate(b64_or_pem: str) -> x509.Certificate:
    data = b64_or_pem.encode()
    if not data.startswith(b"-----BEGIN"):
        data = base64.b64decode(data)
    return x509.load_pem_x509_certificate(data)


def serving_pair(out: Rendered) -> tuple[x509.Certificate, x509.Certificate]:
    secret = out.get("Secret", f"{RELEASE}-tls")
    assert secret["type"] == "kubernetes.io/tls"
    return certificate(secret["data"]["ca.crt"]), certificate(secret["data"]["tls.crt"])


def webhook_bundles(out: Rendered) -> list[str]:
    kinds = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
    return [w["clientConfig"]["caBundle"] for kind in kinds for o in out.of_kind(kind) for w in o["webhooks"]]


@pytest.mark.parametrize("case", ["selfSigned", "mutation", "gatekeeper", "url"])
def test_the_ca_bundle_signs_the_serving_certificate(case: str, rendered: dict[str, Rendered]) -> None:
    out = rendered[case]
    ca, cert = serving_pair(out)
    bundles = webhook_bundles(out) + [p["spec"]["caBundle"] for p in out.of_kind("Provider")]
    assert bundles, "no webhook configuration carries a caBundle"
    for bundle in bundles:
        assert certificate(bundle) == ca
    cert.verify_directly_issued_by(ca)  # raises when another key signed it
    assert certificate(out.get("ConfigMap", f"{RELEASE}-ca")["data"]["ca.crt"]) == ca
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = set(names.get_values_for_type(x509.DNSName))
    # The API server calls <svc>.<ns>.svc; Gatekeeper calls https://<svc>.<ns>:<port>/provider.
    assert {f"{RELEASE}.{NAMESPACE}.svc", f"{RELEASE}.{NAMESPACE}"} <= dns
    if case == "url":
        assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)


def test_a_second_render_keeps_the_generated_certificate(
    rendered: dict[str, Rendered], tmp_path: Path, cases: dict[str, dict[str, Any]]
) -> None:
    """On upgrade the chart reads the live Secret back (lookup); given the first render's Secret the
    same way, the second render keeps its CA and certificate, and the webhooks keep their caBundle."""
    first = rendered["selfSigned"]
    data = first.get("Secret", f"{RELEASE}-tls")["data"]
    again = values_file(tmp_path, {**cases["selfSigned"], "tls": {"selfSigned": {"existingData": data}}})
    second = render(again)
    assert second.get("Secret", f"{RELEASE}-tls")["data"] == data
    assert webhook_bundles(second) == webhook_bundles(first)
    # Without it, a render makes a new CA: the equality above is not an accident.
    fresh = render(values_file(tmp_path, cases["selfSigned"], "fresh.yaml"))
    assert serving_pair(fresh)[0] != serving_pair(first)[0]


def test_secret_mode_uses_the_given_secret_and_ca(
    rendered: dict[str, Rendered], cases: dict[str, Any]
) -> None:
    out = rendered["secret"]
    assert not [s for s in out.of_kind("Secret") if s.get("type") == "kubernetes.io/tls"]
    given = cases["secret"]["tls"]["secret"]["caBundle"]
    assert all(certificate(b) == certificate(given) for b in webhook_bundles(out))
    volumes = {v["name"]: v for v in out.one("Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "my-tls"


@pytest.mark.parametrize(("url", "field", "name"), [
    ("https://127.0.0.1:8443", "ipAddresses", "127.0.0.1"), ("https://[::1]:9443", "ipAddresses", "::1"),
    ("https://dev.example.com:9443/", "dnsNames", "dev.example.com"),
])  # fmt: skip
def test_cert_manager_certificate_names_the_url_host_and_an_ecdsa_keys_usages(
    url: str, field: str, name: str, tmp_path: Path, cases: dict[str, Any]
) -> None:
    """Bug: with tls.mode=certManager the serving certificate left out the host of webhook.url
    (self-signed mode names it), so the API server refused Referee's certificate, and it asked for
    key encipherment on an ECDSA key."""
    out = render(values_file(tmp_path, deep_merge(cases["certManager"], {"webhook": {"url": url}})))
    spec = out.get("Certificate", f"{RELEASE}-tls")["spec"]
    assert name in spec[field]
    assert f"{RELEASE}.{NAMESPACE}.svc" in spec["dnsNames"]
    assert spec["privateKey"]["algorithm"] == "ECDSA"
    assert spec["usages"] == ["server auth", "digital signature"]


@pytest.mark.parametrize("case", ["certManager", "certManagerIssuer"])
def test_cert_manager_issues_and_injects(case: str, rendered: dict[str, Rendered]) -> None:
    out = rendered[case]
    serving = out.get("Certificate", f"{RELEASE}-tls")
    assert serving["spec"]["secretName"] == f"{RELEASE}-tls"
    assert f"{RELEASE}.{NAMESPACE}.svc" in serving["spec"]["dnsNames"]
    for kind in ("ValidatingWebhookConfiguration",):
        obj = out.one(kind)
        assert (
            obj["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/{RELEASE}-tls"
        )
        assert all("caBundle" not in w["clientConfig"] for w in obj["webhooks"])
    if case == "certManagerIssuer":
        assert serving["spec"]["issuerRef"] == {"name": "corp", "kind": "ClusterIssuer"}
        assert not out.of_kind("Issuer")
    else:
        ca = out.get("Certificate", f"{RELEASE}-ca")
        assert ca["spec"]["isCA"] is True
        assert serving["spec"]["issuerRef"]["name"] == out.get("Issuer", f"{RELEASE}-ca")["metadata"]["name"]


def test_cert_manager_with_gatekeeper_needs_a_ca_bundle_on_first_install(base_values: dict[str, Any],
                                                                        tmp_path: Path) -> None:  # fmt: skip
    values = values_file(
        tmp_path, {**base_values, "tls": {"mode": "certManager"}, "gatekeeper": {"enabled": True}}
    )
    proc = template(values, check=False)
    assert proc.returncode != 0 and "gatekeeper.caBundle is required" in proc.stderr


# --- The webhook configurations --------------------------------------------------------------------


def rule_coverage(webhook: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, operation)
        for rule in webhook["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for operation in rule["operations"]
    }


def test_rules_cover_every_kind_referee_reads_and_ephemeral_containers(rendered: dict[str, Rendered]) -> None:
    kinds = {("", "Pod"), ("", "PodTemplate"), ("batch", "CronJob"), *admission._TEMPLATE_KINDS}
    [webhook] = rendered["mutation"].one("ValidatingWebhookConfiguration")["webhooks"]
    covered = rule_coverage(webhook)
    for group, name in kinds:
        for operation in ("CREATE", "UPDATE"):
            assert (group, f"{name.lower()}s", operation) in covered, (group, name, operation)
    assert ("", "pods/ephemeralcontainers", "UPDATE") in covered
    assert all(r["scope"] == "Namespaced" and r["apiVersions"] == ["v1"] for r in webhook["rules"])


def test_mutation_is_asked_only_about_the_kinds_it_pins(rendered: dict[str, Rendered], tmp_path: Path,
                                                       cases: dict[str, Any]) -> None:  # fmt: skip
    """Wedge: the mutating webhook was called for ReplicaSets, whose pinned templates then differed
    from their Deployments' (the controller makes another ReplicaSet). It is called for the kinds
    of mutation.kinds, which Referee's configuration names too."""
    out = rendered["mutation"]
    [webhook] = out.one("MutatingWebhookConfiguration")["webhooks"]
    resources = {resource for _, resource, _ in rule_coverage(webhook)}
    assert resources == {"pods", "pods/ephemeralcontainers", "deployments", "statefulsets", "daemonsets",
                         "jobs", "cronjobs", "replicationcontrollers"}  # fmt: skip
    assert out.config()["mutateKinds"] == ["Pod", "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob",
                                           "ReplicationController"]  # fmt: skip
    values = {**cases["mutation"], "mutation": {"enabled": True, "kinds": ["Deployment"]}}
    only = render(values_file(tmp_path, values)).one("MutatingWebhookConfiguration")["webhooks"][0]
    assert rule_coverage(only) == {("apps", "deployments", "CREATE"), ("apps", "deployments", "UPDATE")}


def test_webhook_settings_and_exclusions(rendered: dict[str, Rendered]) -> None:
    [webhook] = rendered["extras"].one("ValidatingWebhookConfiguration")["webhooks"]
    assert webhook["failurePolicy"] == "Fail"
    assert webhook["sideEffects"] == "None"
    assert webhook["admissionReviewVersions"] == ["v1"]
    assert webhook["matchPolicy"] == "Equivalent"
    assert webhook["clientConfig"]["service"] == {
        "name": RELEASE, "namespace": NAMESPACE, "path": "/validate", "port": 8443}  # fmt: skip
    expressions = {e["key"]: e for e in webhook["namespaceSelector"]["matchExpressions"]}
    names = expressions["kubernetes.io/metadata.name"]
    assert names["operator"] == "NotIn" and {NAMESPACE, "kube-system", "sandbox"} <= set(names["values"])
    assert expressions["referee.dev/exempt"] == {
        "key": "referee.dev/exempt",
        "operator": "NotIn",
        "values": ["true"],
    }
    assert webhook["matchConditions"][0]["name"] == "not-nodes"
    config = rendered["extras"].config()
    assert "namespace" not in config and {"kube-system", "sandbox"} <= set(config["exemptNamespaces"])
    assert config["exemptImages"] == ["registry.k8s.io/pause:*"]


@pytest.mark.parametrize("case", ["selfSigned", "mutation", "extras"])
def test_the_server_deadline_is_the_webhook_timeout(case: str, rendered: dict[str, Rendered]) -> None:
    out = rendered[case]
    deadline = out.config()["timeouts"]["admissionSeconds"]
    kinds = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
    timeouts = [w["timeoutSeconds"] for kind in kinds for o in out.of_kind(kind) for w in o["webhooks"]]
    assert timeouts and all(t == deadline for t in timeouts)
    assert deadline == (7 if case == "extras" else 10)


def test_gatekeeper_timeout_is_the_provider_budget(rendered: dict[str, Rendered]) -> None:
    """Each Provider's timeout is Referee's budget for it, and within Gatekeeper's default webhook
    timeouts (3 s validating, 1 s mutating)."""
    out = rendered["gatekeeper"]
    timeouts = out.config()["timeouts"]
    assert out.get("Provider", RELEASE)["spec"]["timeout"] == timeouts["providerSeconds"] == 2
    assert (
        out.get("Provider", f"{RELEASE}-mutate")["spec"]["timeout"]
        == timeouts["providerMutationSeconds"]
        == 1
    )


def test_url_override_calls_the_server_outside_the_cluster(rendered: dict[str, Rendered]) -> None:
    out = rendered["url"]
    [validate] = out.one("ValidatingWebhookConfiguration")["webhooks"]
    [mutate] = out.one("MutatingWebhookConfiguration")["webhooks"]
    assert validate["clientConfig"]["url"] == "https://127.0.0.1:8443/validate"
    assert mutate["clientConfig"]["url"] == "https://127.0.0.1:8443/mutate"
    assert "service" not in validate["clientConfig"] and "service" not in mutate["clientConfig"]


def test_mutation_fails_open_and_the_server_pins(rendered: dict[str, Rendered]) -> None:
    out = rendered["mutation"]
    [webhook] = out.one("MutatingWebhookConfiguration")["webhooks"]
    assert webhook["failurePolicy"] == "Ignore" and webhook["reinvocationPolicy"] == "IfNeeded"
    assert webhook["clientConfig"]["service"]["path"] == "/mutate"
    assert out.config()["mutate"] is True
    assert rendered["selfSigned"].config()["mutate"] is False
    assert not rendered["selfSigned"].of_kind("MutatingWebhookConfiguration")


def test_audit_mode(rendered: dict[str, Rendered]) -> None:
    assert rendered["audit"].config()["mode"] == "audit"
    assert rendered["audit"].one("ValidatingWebhookConfiguration")["webhooks"][0]["failurePolicy"] == "Ignore"
    assert rendered["selfSigned"].config()["mode"] == "enforce"


@pytest.mark.parametrize(("mode", "given", "expected"), [
    ("audit", None, "Ignore"), ("enforce", None, "Fail"),
    ("audit", "Fail", "Fail"), ("enforce", "Ignore", "Ignore"),
])  # fmt: skip
def test_failure_policy_follows_the_mode_unless_given(
    mode: str, given: str | None, expected: str, tmp_path: Path, cases: dict[str, Any]
) -> None:
    """Wedge: a first install in audit mode still had failurePolicy Fail, so every pod was refused
    until Referee was ready (forever, with a wrong image). Audit now fails open by default."""
    webhook = {"failurePolicy": given} if given else {}
    out = render(values_file(tmp_path, {**cases["selfSigned"], "mode": mode, "webhook": webhook}))
    assert out.one("ValidatingWebhookConfiguration")["webhooks"][0]["failurePolicy"] == expected


@pytest.mark.parametrize(
    ("trust_store", "missing"),
    [
        ({"certificates": {"ca": {"other": "PEM"}}}, "ca:test"),
        ({"certificates": {"tsa": {"test": "PEM"}}}, "ca:test"),
        (
            {
                "existing": {
                    "kind": "Secret",
                    "name": "s",
                    "items": [{"key": "k", "path": "x509/ca/corp/r.pem"}],
                }
            },
            "ca:test",
        ),
        ({}, "ca:test"),
    ],
)
def test_a_trust_policy_naming_a_store_the_values_lack_fails_the_render(
    trust_store: dict[str, Any], missing: str, tmp_path: Path, cases: dict[str, Any]
) -> None:
    """Wedge: such a release rendered a Fail webhook whose pods exited 2 (no trust store), refusing
    pod creation cluster-wide. The install fails instead, naming the store."""
    values = {**cases["selfSigned"], "trustStore": trust_store}
    proc = template(values_file(tmp_path, values), check=False)
    assert proc.returncode != 0
    assert (
        f'trustPolicy names trust stores that trustStore does not provide: {missing} (trust policy "all")'
        in proc.stderr
    )
    # The same store from an existing Secret's items is enough.
    items = [{"key": "root.pem", "path": "x509/ca/test/root.pem"}]
    given = {**values, "trustStore": {"existing": {"kind": "Secret", "name": "s", "items": items}}}
    assert render(values_file(tmp_path, given, "ok.yaml")).of_kind("ValidatingWebhookConfiguration")


def test_a_trust_policy_that_is_not_json_fails_the_render(tmp_path: Path, cases: dict[str, Any]) -> None:
    values = {**cases["selfSigned"], "trustPolicy": {"json": "{not json"}}
    proc = template(values_file(tmp_path, values), check=False)
    assert proc.returncode != 0 and "trustPolicy: not valid JSON" in proc.stderr


def webhook_exempt_names(out: Rendered) -> set[str]:
    [webhook] = out.one("ValidatingWebhookConfiguration")["webhooks"]
    [names] = [
        e
        for e in webhook["namespaceSelector"]["matchExpressions"]
        if e["key"] == "kubernetes.io/metadata.name"
    ]
    return set(names["values"])


def test_gatekeepers_and_cert_managers_namespaces_are_exempt_where_referee_depends_on_them(
    rendered: dict[str, Rendered], tmp_path: Path, cases: dict[str, Any]
) -> None:
    """Wedge: Referee refused cert-manager's own pods (their images are not signed by the cluster's
    keys), which stopped the renewals of Referee's certificate; likewise Gatekeeper's pods."""
    assert "cert-manager" in webhook_exempt_names(rendered["certManager"])
    assert "cert-manager" in rendered["certManager"].config()["exemptNamespaces"]
    assert "gatekeeper-system" in webhook_exempt_names(rendered["gatekeeper"])
    assert "gatekeeper-system" in rendered["gatekeeper"].config()["exemptNamespaces"]
    plain = webhook_exempt_names(rendered["selfSigned"])
    assert "cert-manager" not in plain and "gatekeeper-system" not in plain
    moved = deep_merge(cases["certManager"], {"tls": {"certManager": {"namespace": "certs"}}})
    assert "certs" in webhook_exempt_names(render(values_file(tmp_path, moved)))


def test_without_a_trust_policy_nothing_runs_and_nothing_is_enforced(rendered: dict[str, Rendered]) -> None:
    """Fail safe on a bare `helm install`: no webhook calls a Referee that cannot start."""
    out = rendered["defaults"]
    assert not out.of_kind("ValidatingWebhookConfiguration") and not out.of_kind(
        "MutatingWebhookConfiguration"
    )
    assert out.one("Deployment")["spec"]["replicas"] == 0
    assert rendered["selfSigned"].one("Deployment")["spec"]["replicas"] == 2


METRICS_DIR = "/tmp/referee-metrics"  # noqa: S108 (a path inside the container: an emptyDir)
TMP_DIR = "/tmp"  # noqa: S108 (likewise)

# --- The Deployment and its privileges -------------------------------------------------------------


def test_deployment_is_locked_down(rendered: dict[str, Rendered]) -> None:
    deployment = rendered["extras"].one("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]}}  # fmt: skip
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health", "scheme": "HTTP"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health", "scheme": "HTTP"}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert container["image"] == "referee@sha256:" + "a" * 64
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["automountServiceAccountToken"] is False
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert anti["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts[METRICS_DIR]] and "emptyDir" in volumes[mounts[TMP_DIR]]
    assert {"name": "PROMETHEUS_MULTIPROC_DIR", "value": METRICS_DIR} in container["env"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert {"checksum/config", "checksum/trust"} <= set(annotations)
    pdb = rendered["extras"].one("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_a_changed_trust_store_rolls_the_pods(rendered: dict[str, Rendered], tmp_path: Path,
                                             cases: dict[str, dict[str, Any]]) -> None:  # fmt: skip
    before = rendered["selfSigned"].one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    other = "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"
    values = {**cases["selfSigned"], "trustStore": {"certificates": {"ca": {"test": other}}}}
    after = render(values_file(tmp_path, values)).one("Deployment")["spec"]["template"]["metadata"][
        "annotations"
    ]
    assert after["checksum/trust"] != before["checksum/trust"]
    assert after["checksum/config"] == before["checksum/config"]


def test_pull_secrets_off_means_no_kubernetes_api_access(rendered: dict[str, Rendered]) -> None:
    out = rendered["selfSigned"]
    assert not out.of_kind("ClusterRole") and not out.of_kind("ClusterRoleBinding")
    assert not out.of_kind("Role") and not out.of_kind("RoleBinding")
    assert out.one("ServiceAccount")["automountServiceAccountToken"] is False
    assert "kubernetes" not in out.config()


def test_pull_secrets_on_grants_get_on_secrets_and_serviceaccounts_only(
    rendered: dict[str, Rendered],
) -> None:
    out = rendered["pullSecrets"]
    role = out.one("ClusterRole")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets", "serviceaccounts"], "verbs": ["get"]}
    ]
    binding = out.one("ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}]
    assert out.one("Deployment")["spec"]["template"]["spec"]["automountServiceAccountToken"] is True
    assert out.config()["kubernetes"] == {
        "pullSecrets": True, "cacheTTLSeconds": 30, "trustUnauthenticatedCallers": False}  # fmt: skip


def test_pull_secrets_are_read_only_for_the_authenticated_api_server(
    rendered: dict[str, Rendered], cases: dict[str, Any]
) -> None:
    """With pullSecrets.enabled the API server's client CA goes into /validate's and /mutate's
    client authentication (its PEM beside config.yaml)."""
    out = rendered["pullSecrets"]
    config = out.config()
    assert config["tls"]["clientAuth"] == {
        "admission": {"caFile": "/etc/referee/config/admission-client-ca.crt"}
    }
    data = out.get("ConfigMap", f"{RELEASE}-config")["data"]
    assert certificate(data["admission-client-ca.crt"]) == certificate(
        cases["pullSecrets"]["tls"]["admissionClientCA"]
    )
    assert "clientAuth" not in rendered["selfSigned"].config()["tls"]


def test_pull_secrets_without_client_authentication_are_refused_by_the_chart(
    base_values: dict[str, Any], tmp_path: Path
) -> None:
    """Referee would refuse to start; the chart says why at install time instead."""
    proc = template(values_file(tmp_path, {**base_values, "pullSecrets": {"enabled": True}}), check=False)
    assert proc.returncode != 0
    assert "pullSecrets.enabled needs tls.admissionClientCA" in proc.stderr
    assert "pullSecrets.trustUnauthenticatedCallers=true" in proc.stderr


def test_trusting_unauthenticated_callers_is_written_out(rendered: dict[str, Rendered]) -> None:
    config = rendered["pullSecretsUnauthenticated"].config()
    assert config["kubernetes"]["trustUnauthenticatedCallers"] is True
    assert "clientAuth" not in config["tls"]


def test_hardened_values_reach_referees_configuration(rendered: dict[str, Rendered]) -> None:
    config = rendered["hardened"].config()
    assert config["allowedRegistries"] == ["registry.example.com", "*.dkr.ecr.us-east-1.amazonaws.com"]
    assert config["requireDigest"] is True and config["mutate"] is True
    assert config["cache"]["deniedTTLSeconds"] == 10
    admission = config["tls"]["clientAuth"]["admission"]
    assert admission["caFile"] == "/etc/referee/config/admission-client-ca.crt"
    assert admission["names"] == ["kube-apiserver-webhook-client"]
    assert config["tls"]["clientCAFile"] == "/etc/referee/config/client-ca.crt"
    assert config["kubernetes"]["trustUnauthenticatedCallers"] is False
    defaults = rendered["selfSigned"].config()
    assert defaults["allowedRegistries"] == [] and defaults["requireDigest"] is False
    assert defaults["cache"]["deniedTTLSeconds"] == 15


def test_the_policy_document_reaches_referee_as_a_file_it_accepts(rendered: dict[str, Rendered]) -> None:
    config = rendered["hardened"].config()
    assert config["policy"] == "/etc/referee/config/policy.yaml"  # the config ConfigMap's mount
    data = rendered["hardened"].get("ConfigMap", f"{RELEASE}-config")["data"]["policy.yaml"]
    [release] = parse_policy_document(data.encode()).statements
    assert release.signers.min_signers == 2 and release.referrers[0].signed
    assert "policy" not in rendered["selfSigned"].config()


def test_registries_and_existing_trust_material_are_mounted(rendered: dict[str, Rendered]) -> None:
    config = rendered["extras"].config()
    private = config["registries"]["registry.example.com:5000"]
    assert private["caFile"].startswith("/etc/referee/config/registry-")
    assert private["dockerConfig"].startswith("/etc/referee/registries/")
    assert private["tokenRealms"] == ["auth.example.net"]
    assert config["registries"]["localhost:5000"] == {"plainHTTP": True}
    volumes = {
        v["name"]: v for v in rendered["extras"].one("Deployment")["spec"]["template"]["spec"]["volumes"]
    }
    [source] = volumes["registries"]["projected"]["sources"]
    assert source["secret"]["name"] == "regcred"
    assert source["secret"]["items"][0]["key"] == ".dockerconfigjson"
    out = rendered["existingTrust"]
    assert not out.of_kind("Secret") or all(
        s["metadata"]["name"] != f"{RELEASE}-trust" for s in out.of_kind("Secret")
    )
    trust = {v["name"]: v for v in out.one("Deployment")["spec"]["template"]["spec"]["volumes"]}["trust"]
    policy_item = {"key": "trustpolicy.json", "path": "policy/trustpolicy.json"}
    store_item = {"key": "root.pem", "path": "truststore/x509/ca/corp/root.pem"}
    assert trust["projected"]["sources"] == [
        {"configMap": {"name": "corp-trust-policy", "items": [policy_item]}},
        {"secret": {"name": "corp-trust-store", "items": [store_item]}},
    ]


def test_helm_test_calls_readyz_with_the_ca(rendered: dict[str, Rendered]) -> None:
    [pod] = [
        p
        for p in rendered["selfSigned"].of_kind("Pod")
        if p["metadata"]["annotations"].get("helm.sh/hook") == "test"
    ]
    [container] = pod["spec"]["containers"]
    assert container["command"][-1] == f"https://{RELEASE}.{NAMESPACE}.svc:8443/readyz"
    assert pod["spec"]["volumes"][0]["configMap"]["name"] == f"{RELEASE}-ca"


# --- Gatekeeper: rendered from policies/ -------------------------------------------------------------

POLICY_COPIES = [
    "provider.yaml",
    "referee-verified-images/template.yaml",
    "referee-verified-images/samples/constraint.yaml",
    "referee-pinned-images/template.yaml",
    "referee-pinned-images/samples/constraint.yaml",
    "referee-pinned-images/samples/assign-pin-digests.yaml",
]


def test_the_chart_copies_of_policies_are_in_step() -> None:
    copies = CHART / "files" / "policies"
    present = sorted(str(p.relative_to(copies)) for p in copies.rglob("*") if p.is_file())
    assert present == sorted(POLICY_COPIES)
    for name in POLICY_COPIES:
        assert (copies / name).read_bytes() == (ROOT / "policies" / name).read_bytes(), (
            f"charts/referee/files/policies/{name} differs from policies/{name}: run charts/sync-policies.sh"
        )
    script = (ROOT / "charts" / "sync-policies.sh").read_text()
    assert all(name in script for name in POLICY_COPIES)


def test_gatekeeper_resources_come_from_policies(rendered: dict[str, Rendered]) -> None:
    out = rendered["gatekeeper"]
    for name in ("referee-verified-images", "referee-pinned-images"):
        source = yaml.safe_load((ROOT / "policies" / name / "template.yaml").read_text())
        [template_obj] = [
            t
            for t in out.of_kind("ConstraintTemplate")
            if t["metadata"]["name"] == source["metadata"]["name"]
        ]
        assert template_obj["spec"] == source["spec"]
    provider = out.get("Provider", RELEASE)
    assert provider["spec"]["url"] == f"https://{RELEASE}.{NAMESPACE}:8443/provider"
    assert out.get("Provider", f"{RELEASE}-mutate")["spec"]["url"].endswith("/provider/mutate")
    constraint = out.one("RefereeVerifiedImages")
    assert constraint["spec"]["parameters"]["provider"] == RELEASE
    assert "provider" not in out.one("RefereePinnedImages")["spec"]["parameters"]
    assert {NAMESPACE, "kube-system", "gatekeeper-system"} <= set(
        constraint["spec"]["match"]["excludedNamespaces"]
    )
    assigns = out.of_kind("Assign")
    assert len(assigns) == 3
    assert {a["spec"]["parameters"]["assign"]["externalData"]["provider"] for a in assigns} == {
        f"{RELEASE}-mutate"
    }
    assert not rendered["selfSigned"].of_kind("Provider") and not rendered["selfSigned"].of_kind(
        "ConstraintTemplate"
    )


def test_gatekeeper_calls_over_mutual_tls_when_given_its_ca(
    rendered: dict[str, Rendered], cases: dict[str, Any]
) -> None:
    out = rendered["gatekeeper"]
    config = out.config()
    assert config["tls"]["clientCAFile"] == "/etc/referee/config/client-ca.crt"
    given = cases["gatekeeper"]["tls"]["clientCA"]
    assert certificate(out.get("ConfigMap", f"{RELEASE}-config")["data"]["client-ca.crt"]) == certificate(
        given
    )
    assert "clientCAFile" not in rendered["selfSigned"].config()["tls"]


def test_gatekeeper_excludes_the_namespaces_the_webhooks_exempt(rendered: dict[str, Rendered]) -> None:
    """Namespace exemptions on the Gatekeeper path are the constraints' and the Assign's own
    (Referee never takes one from a provider key), rendered from the values the webhooks' use."""
    out = rendered["gatekeeper"]
    [webhook] = out.one("ValidatingWebhookConfiguration")["webhooks"]
    [names] = [
        e
        for e in webhook["namespaceSelector"]["matchExpressions"]
        if e["key"] == "kubernetes.io/metadata.name"
    ]
    assert set(names["values"]) == {NAMESPACE, "kube-system", "sandbox", "gatekeeper-system"}
    matches = [o["spec"]["match"] for kind in ("RefereeVerifiedImages", "RefereePinnedImages", "Assign")
               for o in out.of_kind(kind)]  # fmt: skip
    assert len(matches) == 5
    for match in matches:
        assert match["excludedNamespaces"] == names["values"]
        # The opt-out label the webhooks honour is honoured here too.
        assert match["namespaceSelector"] == {
            "matchExpressions": [{"key": "referee.dev/exempt", "operator": "NotIn", "values": ["true"]}]
        }


def test_assigns_pin_every_position_the_pinned_images_template_checks(rendered: dict[str, Rendered]) -> None:
    """Wedge: with pinDigests on, the Assign pinned spec.containers only while RefereePinnedImages
    checks init containers and image volumes too: every pod with an init container was denied.
    Image volumes are pinned only where a volume is one (pathTests), never added to others."""
    assigns = {a["spec"]["location"]: a for a in rendered["gatekeeper"].of_kind("Assign")}
    assert set(assigns) == {"spec.containers[name:*].image", "spec.initContainers[name:*].image",
                            "spec.volumes[name:*].image.reference"}  # fmt: skip
    volumes = assigns["spec.volumes[name:*].image.reference"]["spec"]["parameters"]
    assert volumes["pathTests"] == [{"subPath": "spec.volumes[name:*].image", "condition": "MustExist"}]
    for assign in assigns.values():
        assert assign["spec"]["applyTo"] == [{"groups": [""], "kinds": ["Pod"], "versions": ["v1"]}]
        assert assign["spec"]["parameters"]["assign"]["externalData"]["failurePolicy"] == "Fail"


def test_gatekeeper_objects_are_named_after_the_release(tmp_path: Path, cases: dict[str, Any]) -> None:
    """Constraints and Assigns are cluster-scoped: two releases must not overwrite each other's."""
    names = {}
    for release in ("one", "two"):
        values = values_file(tmp_path, cases["gatekeeper"], f"{release}.yaml")
        args = ["--namespace", release, "--kube-version", KUBE_VERSION, "--values", str(values)]
        text = helm("template", release, str(CHART), *args).stdout
        kinds = ("Assign", "RefereeVerifiedImages", "RefereePinnedImages", "Provider")
        objects = [d for d in yaml.safe_load_all(text) if d]
        names[release] = {(o["kind"], o["metadata"]["name"]) for o in objects if o["kind"] in kinds}
    assert len(names["one"]) == 7 and not names["one"] & names["two"]
    assert ("RefereeVerifiedImages", "one-referee-signed-images-only") in names["one"]
    assert ("Assign", "one-referee-pin-init-container-digests") in names["one"]


def test_constraints_enforce_as_the_mode_says(rendered: dict[str, Rendered], tmp_path: Path,
                                              cases: dict[str, Any]) -> None:  # fmt: skip
    """A release in audit mode must not deny through Gatekeeper: its constraints warn."""
    assert rendered["gatekeeper"].one("RefereeVerifiedImages")["spec"]["enforcementAction"] == "deny"
    audit = render(values_file(tmp_path, {**cases["gatekeeper"], "mode": "audit"}))
    assert {c["spec"]["enforcementAction"] for kind in ("RefereeVerifiedImages", "RefereePinnedImages")
            for c in audit.of_kind(kind)} == {"warn"}  # fmt: skip
    chosen = deep_merge(
        cases["gatekeeper"], {"mode": "audit", "gatekeeper": {"constraints": {"enforcementAction": "dryrun"}}}
    )
    assert (
        render(values_file(tmp_path, chosen, "d.yaml")).one("RefereeVerifiedImages")["spec"][
            "enforcementAction"
        ]
        == "dryrun"
    )


def test_the_constraints_cover_every_kind_that_runs_pods(rendered: dict[str, Rendered]) -> None:
    [constraint] = rendered["gatekeeper"].of_kind("RefereeVerifiedImages")
    kinds = {(group, kind) for k in constraint["spec"]["match"]["kinds"] for group in k["apiGroups"]
             for kind in k["kinds"]}  # fmt: skip
    assert {("", "Pod"), ("", "PodTemplate"), ("", "ReplicationController"), ("batch", "CronJob"),
            *admission._TEMPLATE_KINDS} <= kinds  # fmt: skip


# --- The NetworkPolicy -------------------------------------------------------------------------------


def ingress_rules(out: Rendered) -> list[dict[str, Any]]:
    policy = out.one("NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert (
        policy["spec"]["podSelector"]["matchLabels"]
        == out.one("Deployment")["spec"]["selector"]["matchLabels"]
    )
    rules: list[dict[str, Any]] = policy["spec"]["ingress"]
    return rules


def test_a_network_policy_by_default_admits_the_webhook_port_only(rendered: dict[str, Rendered]) -> None:
    for case in ("defaults", "selfSigned", "gatekeeper"):
        [rule] = ingress_rules(rendered[case])
        assert rule["ports"] == [{"port": "https", "protocol": "TCP"}]
        [container] = rendered[case].one("Deployment")["spec"]["template"]["spec"]["containers"]
        # The webhook port is the one the policy admits; the kubelet's probes on the health port
        # come from the pod's node, which NetworkPolicy always allows.
        assert [p["name"] for p in container["ports"]] == ["https", "health"]
        assert "from" not in rule  # no source known: any may reach that port, and no other


def test_network_policy_sources_are_the_api_server_gatekeeper_and_the_extra_peers(
    rendered: dict[str, Rendered],
) -> None:
    [rule] = ingress_rules(rendered["networkPolicySources"])
    assert rule["ports"] == [{"port": "https", "protocol": "TCP"}]
    assert rule["from"] == [
        {"ipBlock": {"cidr": "10.0.0.0/28"}},
        {"ipBlock": {"cidr": "fd00::/64"}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gatekeeper-system"}}},
        {"podSelector": {"matchLabels": {"app.kubernetes.io/instance": RELEASE,
                                         "app.kubernetes.io/component": "helm-test"}}},
    ]  # fmt: skip
    [test_pod] = [p for p in rendered["networkPolicySources"].of_kind("Pod")
                  if p["metadata"]["annotations"].get("helm.sh/hook") == "test"]  # fmt: skip
    assert test_pod["metadata"]["labels"]["app.kubernetes.io/component"] == "helm-test"


def test_gatekeepers_namespace_is_a_source_only_with_gatekeeper(
    tmp_path: Path, cases: dict[str, Any]
) -> None:
    values = cases["networkPolicySources"]
    out = render(values_file(tmp_path, {**values, "gatekeeper": {"enabled": False}}))
    [rule] = ingress_rules(out)
    namespaces = [p["namespaceSelector"]["matchLabels"] for p in rule["from"] if "namespaceSelector" in p]
    assert namespaces == [{"kubernetes.io/metadata.name": "monitoring"}]


def test_the_network_policy_can_be_turned_off(tmp_path: Path, cases: dict[str, Any]) -> None:
    out = render(values_file(tmp_path, {**cases["selfSigned"], "networkPolicy": {"enabled": False}}))
    assert not out.of_kind("NetworkPolicy")


def test_referees_namespace_comes_from_the_downward_api(rendered: dict[str, Rendered]) -> None:
    [container] = rendered["selfSigned"].one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert {
        "name": "POD_NAMESPACE",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
    } in container["env"]


def test_helm_is_the_real_one() -> None:
    assert "v3.22" in run([tool("helm"), "version", "--short"]).stdout


def test_trust_material_from_files_as_the_readme_loads_it(tmp_path: Path, trust_root_pem: str) -> None:
    """`--set-file trustPolicy.json=… --set-file trustStore.certificates.ca.acme=…`, as in the README."""
    policy = tmp_path / "trustpolicy.json"
    policy.write_text('{"version": "1.0", "trustPolicies": []}\n')
    root = tmp_path / "acme-root.pem"
    root.write_text(trust_root_pem)
    out = render(
        None,
        "--set-file",
        f"trustPolicy.json={policy}",
        "--set-file",
        f"trustStore.certificates.ca.acme={root}",
    )
    secret = out.get("Secret", f"{RELEASE}-trust")["stringData"]
    assert secret["trustpolicy.json"] == policy.read_text().strip()
    assert secret["ca.acme.pem"].strip() == trust_root_pem.strip()
    assert out.of_kind("ValidatingWebhookConfiguration")


def test_every_top_level_value_is_commented() -> None:
    """Each top-level key (or group of keys on consecutive lines) has a comment above it."""
    lines = (CHART / "values.yaml").read_text().splitlines()

    def is_key(line: str) -> bool:
        return bool(line) and not line[0].isspace() and not line.startswith("#")

    for i, line in enumerate(lines):
        if is_key(line):
            j = i - 1
            while j >= 0 and is_key(lines[j]):  # keys on consecutive lines share one comment
                j -= 1
            assert j >= 0 and lines[j].startswith("#"), f"values.yaml: {line.split(':')[0]} has no comment"


def test_one_replica_gets_no_disruption_budget_that_would_block_drains(
    tmp_path: Path, cases: dict[str, Any]
) -> None:
    out = render(values_file(tmp_path, {**cases["selfSigned"], "replicaCount": 1}))
    assert out.one("Deployment")["spec"]["replicas"] == 1
    assert not out.of_kind("PodDisruptionBudget")


@pytest.mark.parametrize(
    ("url", "ip", "dns"),
    [("https://[::1]:9443", "::1", None), ("https://dev.example.com:9443/", None, "dev.example.com")],
)
def test_the_url_host_is_in_the_serving_certificate(
    url: str, ip: str | None, dns: str | None, tmp_path: Path, cases: dict[str, Any]
) -> None:
    out = render(values_file(tmp_path, {**cases["selfSigned"], "webhook": {"url": url}}))
    names = serving_pair(out)[1].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    if ip:
        assert ipaddress.ip_address(ip) in names.get_values_for_type(x509.IPAddress)
    if dns:
        assert dns in names.get_values_for_type(x509.DNSName)


def test_a_gatekeeper_only_install_has_no_webhook_of_its_own(tmp_path: Path, cases: dict[str, Any]) -> None:
    """webhook.enabled=false: Gatekeeper asks Referee, and pods are not checked twice."""
    values = deep_merge(cases["gatekeeper"], {"webhook": {"enabled": False}, "mutation": {"enabled": True}})
    out = render(values_file(tmp_path, values))
    assert not out.of_kind("ValidatingWebhookConfiguration") and not out.of_kind(
        "MutatingWebhookConfiguration"
    )
    assert out.get("Provider", RELEASE) and out.one("RefereeVerifiedImages")
    assert out.one("Deployment")["spec"]["replicas"] == 2


def test_probes_have_their_own_port_and_shutdown_waits_for_the_service(rendered: dict[str, Rendered]) -> None:
    """Wedge: the probes shared the verification threads (a 1 s probe behind 9 s verifications took
    ready pods out of the Service), and a rollout of Referee stopped pods the API server was still
    calling. Probes go to server.healthPort; a preStop sleep keeps a stopping pod answering."""
    out = rendered["selfSigned"]
    pod = out.one("Deployment")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"https": 8443, "health": 8081}
    assert out.config()["server"]["healthPort"] == 8081 and out.config()["listen"] == "0.0.0.0:8443"
    assert container["lifecycle"] == {"preStop": {"sleep": {"seconds": 10}}}
    assert pod["terminationGracePeriodSeconds"] >= 10 + 10 + 5  # the sleep, gunicorn's graceful stop
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert "hostNetwork" not in pod and "dnsPolicy" not in pod


def test_host_network_and_a_container_port_apart_from_the_service_port(
    tmp_path: Path, cases: dict[str, Any]
) -> None:
    """EKS with a custom CNI needs hostNetwork; a private GKE control plane reaches nodes on 443
    and 10250 only, so the container port may differ from the Service's."""
    values = {**cases["selfSigned"], "hostNetwork": True, "service": {"port": 443, "containerPort": 10250},
              "priorityClassName": ""}  # fmt: skip
    out = render(values_file(tmp_path, values))
    pod = out.one("Deployment")["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert "priorityClassName" not in pod
    assert pod["containers"][0]["ports"][0] == {"name": "https", "containerPort": 10250, "protocol": "TCP"}
    assert out.config()["listen"] == "0.0.0.0:10250"
    [port] = out.one("Service")["spec"]["ports"]
    assert port["port"] == 443 and port["targetPort"] == "https"
    assert out.one("ValidatingWebhookConfiguration")["webhooks"][0]["clientConfig"]["service"]["port"] == 443
    chosen = {**values, "dnsPolicy": "Default"}
    assert (
        render(values_file(tmp_path, chosen, "dns.yaml")).one("Deployment")["spec"]["template"]["spec"][
            "dnsPolicy"
        ]
        == "Default"
    )


def test_the_knobs_of_mature_charts(tmp_path: Path, cases: dict[str, Any]) -> None:
    values = deep_merge(cases["selfSigned"], {
        "fullnameOverride": "gate", "global": {"imageRegistry": "mirror.example.com/"},
        "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/r"}},
        "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}], "extraArgs": ["--config=/x"],
        "extraVolumes": [{"name": "bundle", "configMap": {"name": "ca-bundle"}}],
        "extraVolumeMounts": [{"name": "bundle", "mountPath": "/etc/ssl/extra", "readOnly": True}],
        "revisionHistoryLimit": 2,
        "webhook": {"namespaceSelector": {"matchLabels": {"referee.dev/enforce": "true"}},
                    "objectSelector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]}},
        "mutation": {"enabled": True},
        "imagePullSecrets": ["pull"], "nodeSelector": {"pool": "system"},
        "tolerations": [{"key": "system", "operator": "Exists", "effect": "NoSchedule"}],
    })  # fmt: skip
    out = render(values_file(tmp_path, values))
    deployment = out.get("Deployment", "gate")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == "mirror.example.com/referee:0.1.0"
    assert {"name": "HTTPS_PROXY", "value": "http://proxy:3128"} in container["env"]
    assert container["args"] == ["--config=/x"]
    assert {"name": "bundle", "configMap": {"name": "ca-bundle"}} in pod["volumes"]
    assert {"name": "bundle", "mountPath": "/etc/ssl/extra", "readOnly": True} in container["volumeMounts"]
    assert deployment["spec"]["revisionHistoryLimit"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    account = out.get("ServiceAccount", "gate")
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/r"}
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        [webhook] = out.get(kind, "gate")["webhooks"]
        assert webhook["namespaceSelector"]["matchLabels"] == {"referee.dev/enforce": "true"}
        assert len(webhook["namespaceSelector"]["matchExpressions"]) == 2  # the exemptions stay
        assert webhook["objectSelector"] == {"matchExpressions": [{"key": "app", "operator": "Exists"}]}
    # helm test's pod runs where the chart's pods may run, pulling as they pull.
    [test_pod] = [p for p in out.of_kind("Pod") if p["metadata"]["annotations"].get("helm.sh/hook") == "test"]
    assert test_pod["spec"]["imagePullSecrets"] == [{"name": "pull"}]
    assert test_pod["spec"]["nodeSelector"] == {"pool": "system"}
    assert test_pod["spec"]["tolerations"] == values["tolerations"]
    assert test_pod["spec"]["containers"][0]["resources"] == deployment["spec"]["template"]["spec"][
        "containers"][0]["resources"]  # fmt: skip
    assert test_pod["spec"]["containers"][0]["image"] == container["image"]


@pytest.mark.parametrize(
    ("version", "ok"), [("1.29.9", False), ("1.30.0", True), ("1.37.2", True), (None, False)]
)
def test_the_chart_refuses_clusters_older_than_it_supports(
    version: str | None, ok: bool, value_files: dict[str, Path]
) -> None:
    """ValidatingAdmissionPolicy v1 and the preStop sleep action need 1.30; helm template's own
    default (1.20, without --kube-version) is refused too, with a hint."""
    args = ["template", RELEASE, str(CHART), "--values", str(value_files["selfSigned"])]
    proc = helm(*args, *(["--kube-version", version] if version else []), check=False)
    assert (proc.returncode == 0) == ok, proc.stderr
    if not ok:
        assert "the referee chart needs Kubernetes 1.30 or later" in proc.stderr
