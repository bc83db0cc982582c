"""The per-endpoint client-certificate check, on the certificate bytes the TLS layer hands over."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from tests.helpers import pki
from webhook.config import ClientAuth
from webhook.server.clientauth import ClientCheck


def _der(pair: pki.KeyPair) -> bytes:
    return pair.cert.public_bytes(serialization.Encoding.DER)


def test_a_client_certificate_expired_since_its_tls_session_began_is_refused(tmp_path: Path) -> None:
    """A resumed TLS session carries the certificate of its first handshake, which the TLS layer
    does not check again: a certificate that expired since would otherwise keep its caller in."""
    ca = pki.make_ca(tmp_path)
    client = pki.make_client_cert(tmp_path, ca)
    expired_at = client.cert.not_valid_after_utc
    later = ClientCheck(
        ClientAuth(ca.cert_path), "/provider", clock=lambda: expired_at + dt.timedelta(seconds=1)
    )
    caller = later.check(_der(client))
    assert not caller.authenticated and "not valid now" in caller.problem
    assert ClientCheck(ClientAuth(ca.cert_path), "/provider").check(_der(client)).authenticated


def test_a_client_certificate_not_yet_valid_is_refused(tmp_path: Path) -> None:
    ca = pki.make_ca(tmp_path)
    client = pki.make_client_cert(tmp_path, ca)
    before = client.cert.not_valid_before_utc - dt.timedelta(seconds=1)
    caller = ClientCheck(ClientAuth(ca.cert_path), "/validate", clock=lambda: before).check(_der(client))
    assert not caller.authenticated and "not valid now" in caller.problem


def test_a_client_certificate_of_another_ca_or_name_is_refused(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    theirs.mkdir()
    ca, other = pki.make_ca(ours), pki.make_ca(theirs, "Other CA")
    stranger = pki.make_client_cert(theirs, other)
    someone_else = pki.make_client_cert(ours, ca, cn="someone-else")
    assert not ClientCheck(ClientAuth(ca.cert_path), "/provider").check(_der(stranger)).authenticated
    named = ClientCheck(ClientAuth(ca.cert_path, ("gatekeeper",)), "/provider")
    assert not named.check(_der(someone_else)).authenticated
    assert not named.check(None).authenticated
    assert named.check(_der(pki.make_client_cert(ours, ca, stem="gk"))).authenticated
