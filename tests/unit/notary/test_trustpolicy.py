"""Trust policy documents: every rule notation-go applies, with a message that says what to fix."""

from __future__ import annotations

import json
from typing import Any

import pytest

from webhook.errors import ConfigError
from webhook.notary.trustpolicy import Action, parse_distinguished_name, parse_trust_policy

IDENTITY = "x509.subject: C=US, ST=WA, O=Referee Test"


def statement(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "prod",
        "registryScopes": ["registry.example.com/team/app"],
        "signatureVerification": {"level": "strict"},
        "trustStores": ["ca:acme"],
        "trustedIdentities": [IDENTITY],
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def doc(*statements: dict[str, Any], version: str = "1.0") -> str:
    return json.dumps({"version": version, "trustPolicies": list(statements)})


def test_a_valid_document() -> None:
    d = parse_trust_policy(
        doc(statement(), statement(name="all", registryScopes=["*"], trustedIdentities=["*"]))
    )
    prod, everything = d.policies
    assert prod.level == "strict" and prod.actions["revocation"] is Action.ENFORCE
    assert prod.trust_stores == (("ca", "acme"),)
    assert prod.trusted_identities[0].attributes == {"C": "US", "ST": "WA", "O": "Referee Test"}
    assert everything.is_global and everything.trust_any_identity
    assert prod.verify_timestamp == "always"


def test_selection_exact_then_global_then_none() -> None:
    d = parse_trust_policy(doc(statement(), statement(name="all", registryScopes=["*"])))
    assert d.select("registry.example.com/team/app").name == "prod"  # type: ignore[union-attr]
    assert d.select("registry.example.com/team/other").name == "all"  # type: ignore[union-attr]
    only = parse_trust_policy(doc(statement()))
    assert only.select("registry.example.com/team/other") is None
    assert only.select("registry.example.com/team/App") is None  # paths are compared exactly


@pytest.mark.parametrize(
    "written",
    [
        "Registry.Example.com/team/app",
        "registry.example.com:443/team/app",
        "REGISTRY.EXAMPLE.COM:443/team/app",
    ],
)
def test_respelled_registry_host_does_not_fall_through_to_the_weaker_global_statement(written: str) -> None:
    """Attack: an image whose registry is written in upper case or with :443 reaches the same
    registry but missed the scoped strict statement and was judged by a weaker '*'."""
    d = parse_trust_policy(
        doc(
            statement(), statement(name="all", registryScopes=["*"], signatureVerification={"level": "audit"})
        )
    )
    assert d.select(written).name == "prod"  # type: ignore[union-attr]


def test_scope_written_with_host_case_or_default_port_selects_the_canonical_image() -> None:
    d = parse_trust_policy(doc(statement(registryScopes=["LOCALHOST:5000/apps/web"])))
    assert d.select("localhost:5000/apps/web").name == "prod"  # type: ignore[union-attr]


def test_two_spellings_of_one_scope_in_two_statements_are_refused() -> None:
    with pytest.raises(ConfigError, match="appears in statements 'prod' and 'other'"):
        parse_trust_policy(
            doc(statement(), statement(name="other", registryScopes=["registry.example.com:443/team/app"]))
        )


def test_global_statement_weaker_than_a_scoped_one_is_warned_about() -> None:
    weak = statement(name="all", registryScopes=["*"], signatureVerification={"level": "permissive"})
    warnings = parse_trust_policy(doc(statement(), weak)).weaker_global_warnings()
    assert len(warnings) == 1
    assert "'all' (level permissive) enforces less than 'prod' (level strict" in warnings[0]
    assert "revocation" in warnings[0] and "registry.example.com/team/app" in warnings[0]
    strong = statement(name="all", registryScopes=["*"])
    assert parse_trust_policy(doc(statement(), strong)).weaker_global_warnings() == ()
    overridden = statement(
        name="all",
        registryScopes=["*"],
        signatureVerification={"level": "strict", "override": {"revocation": "log"}},
    )
    assert "revocation" in parse_trust_policy(doc(statement(), overridden)).weaker_global_warnings()[0]


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("strict", ["enforce"] * 5),
        ("permissive", ["enforce", "enforce", "log", "log", "log"]),
        ("audit", ["enforce", "log", "log", "log", "log"]),
    ],
)
def test_enforcement_matrix(level: str, expected: list[str]) -> None:
    p = parse_trust_policy(doc(statement(signatureVerification={"level": level}))).policies[0]
    checks = ["integrity", "authenticity", "authenticTimestamp", "expiry", "revocation"]
    assert [p.actions[c].value for c in checks] == expected


def test_skip_level() -> None:
    p = parse_trust_policy(
        doc(statement(signatureVerification={"level": "skip"}, trustStores=None, trustedIdentities=None))
    ).policies[0]
    assert all(a is Action.SKIP for a in p.actions.values())


def test_overrides() -> None:
    p = parse_trust_policy(
        doc(
            statement(
                signatureVerification={"level": "strict", "override": {"revocation": "skip", "expiry": "log"}}
            )
        )
    ).policies[0]
    assert p.actions["revocation"] is Action.SKIP and p.actions["expiry"] is Action.LOG
    assert p.actions["authenticity"] is Action.ENFORCE


@pytest.mark.parametrize(
    ("document", "phrase"),
    [
        ("{", "not valid JSON"),
        ("[]", "JSON object"),
        (json.dumps({"trustPolicies": [statement()]}), "no version"),
        (doc(statement(), version="2.0"), "unsupported version '2.0'"),
        (json.dumps({"version": "1.0", "trustPolicies": []}), "at least one"),
        (json.dumps({"version": "1.0", "trustPolicies": None}), "at least one"),
        (doc(statement(), statement(registryScopes=["r.example/x"])), "named 'prod'"),
        (doc(statement(name="")), "has no name"),
        (doc(statement(signatureVerification=None)), "signatureVerification is missing"),
        (doc(statement(signatureVerification={"level": ""})), "has no level"),
        (doc(statement(signatureVerification={"level": "Strict"})), "unknown level 'Strict'"),
        (
            doc(statement(signatureVerification={"level": "strict", "override": {"integrity": "enforce"}})),
            "integrity cannot be overridden",
        ),
        (
            doc(statement(signatureVerification={"level": "strict", "override": {"expiry": "skip"}})),
            "'expiry' cannot be skipped",
        ),
        (
            doc(statement(signatureVerification={"level": "strict", "override": {"signature": "log"}})),
            "cannot override 'signature'",
        ),
        (
            doc(statement(signatureVerification={"level": "strict", "override": {"expiry": "warn"}})),
            "action 'warn'",
        ),
        (
            doc(
                statement(
                    signatureVerification={"level": "skip", "override": {"revocation": "log"}},
                    trustStores=None,
                    trustedIdentities=None,
                )
            ),
            "cannot be customised",
        ),
        (
            doc(statement(signatureVerification={"level": "strict", "verifyTimestamp": "never"})),
            "verifyTimestamp",
        ),
        (doc(statement(signatureVerification={"level": "skip"})), "skips signature verification"),
        (doc(statement(trustStores=[])), "needs both"),
        (doc(statement(trustedIdentities=[])), "needs both"),
        (doc(statement(trustStores=["acme"])), "not TYPE:NAME"),
        (doc(statement(trustStores=["x509:acme"])), "type 'x509'"),
        (doc(statement(trustStores=["ca:acme/prod"])), "must match"),
        (doc(statement(trustedIdentities=["*", IDENTITY])), "wildcard identity"),
        (doc(statement(trustedIdentities=[""])), "empty trusted identity"),
        (doc(statement(trustedIdentities=["C=US, ST=WA, O=x"])), "prefix"),
        (doc(statement(trustedIdentities=["x509.subject:  "])), "no distinguished name"),
        (doc(statement(trustedIdentities=["x509.subject: C=US, O=x"])), "no 'ST'"),
        (doc(statement(trustedIdentities=["x509.subject: C=US, S=WA, O=x"])), "no 'ST'"),
        (doc(statement(trustedIdentities=["x509.subject: C=US+ST=WA, O=x"])), "multi-valued"),
        (doc(statement(trustedIdentities=["x509.subject: C=US, ST=WA, O=x, O=y"])), "repeats"),
        (doc(statement(trustedIdentities=["x509.subject: C=US, ST=WA, O=#0403"])), "'=#'"),
        (doc(statement(trustedIdentities=[IDENTITY, IDENTITY + ", CN=signer"])), "overlap"),
        (doc(statement(registryScopes=[])), "no registryScopes"),
        (doc(statement(registryScopes=["*", "r.example/app"])), "wildcard scope"),
        (doc(statement(registryScopes=["registry.example.com/*"])), "wildcard"),
        (doc(statement(registryScopes=["registry.example.com"])), "not valid"),
        (doc(statement(registryScopes=["registry.example.com/app:v1"])), "not valid"),
        (doc(statement(registryScopes=["https://registry.example.com/app"])), "not valid"),
        (doc(statement(registryScopes=["registry.example.com/Team/app"])), "not valid"),
        (doc(statement(registryScopes=["registry.example.com/app/"])), "not valid"),
        (doc(statement(), statement(name="b")), "appears in statements 'prod' and 'b'"),
        (
            doc(statement(name="a", registryScopes=["*"]), statement(name="b", registryScopes=["*"])),
            "scope '*' appears",
        ),
    ],
)
def test_invalid_documents(document: str, phrase: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_trust_policy(document)
    assert phrase in str(info.value)


@pytest.mark.parametrize(
    "scope",
    [
        "localhost/app",
        "localhost:5000/app",
        "10.10.10.10:8080/rep/rep2",
        "Registry.Example.com/app",
        "a.b/c__d/e--f",
    ],
)
def test_valid_scopes(scope: str) -> None:
    assert parse_trust_policy(doc(statement(registryScopes=[scope]))).policies[0].registry_scopes == (scope,)


def test_plugin_identities_are_kept_apart() -> None:
    p = parse_trust_policy(doc(statement(trustedIdentities=[IDENTITY, "plugin.example:anything"]))).policies[
        0
    ]
    assert len(p.trusted_identities) == 1 and p.other_identities == ("plugin.example:anything",)


@pytest.mark.parametrize(
    ("dn", "expected"),
    [
        ("C=US, ST=WA, O=Acme", {"C": "US", "ST": "WA", "O": "Acme"}),
        ("C=US;ST=WA;O=Acme", {"C": "US", "ST": "WA", "O": "Acme"}),
        (r"C=US, ST=WA, O=Acme\, Inc.", {"C": "US", "ST": "WA", "O": "Acme, Inc."}),
        (r"C=US, ST=WA, O=\ lead", {"C": "US", "ST": "WA", "O": " lead"}),
        (r"C=US, ST=WA, O=caf\C3\A9", {"C": "US", "ST": "WA", "O": "café"}),
        (
            "CN=x, C=US, ST=WA, O=Acme, OU=Build",
            {"CN": "x", "C": "US", "ST": "WA", "O": "Acme", "OU": "Build"},
        ),
    ],
)
def test_distinguished_names(dn: str, expected: dict[str, str]) -> None:
    assert parse_distinguished_name(dn) == expected


def test_identity_subset_match() -> None:
    p = parse_trust_policy(doc(statement())).policies[0]
    ident = p.trusted_identities[0]
    assert ident.matches({"C": "US", "ST": "WA", "O": "Referee Test", "CN": "signer", "L": "Seattle"})
    assert not ident.matches({"C": "US", "ST": "WA", "O": "Other"})
    assert not ident.matches({"C": "US", "ST": "WA"})
