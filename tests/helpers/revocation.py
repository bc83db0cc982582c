"""Revocation services for tests: the real OpenSSL OCSP responder, and CRLs served over HTTP.

CRLs are made with ``cryptography`` and signed by the certificate's issuer; the HTTP server is the
standard library's file server. The OCSP responder is ``openssl ocsp`` reading an index file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from tests.helpers.codesign import Chain
from tests.helpers.tools import free_port


def write_crl(path: Path, chain: Chain, revoked: list[x509.Certificate], *, next_update_h: int = 24) -> None:
    """A CRL from the leaf's issuer listing ``revoked`` (DER)."""
    issuer, key = chain.certs[1], chain.issuer_key
    assert key is not None
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(now - dt.timedelta(minutes=1))
        .next_update(now + dt.timedelta(hours=next_update_h))
    )
    for cert in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(cert.serial_number)
            .revocation_date(now - dt.timedelta(minutes=1))
            .build()
        )
    path.write_bytes(builder.sign(key, hashes.SHA384()).public_bytes(serialization.Encoding.DER))


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def file_server(directory: Path, port: int) -> Iterator[str]:
    """Serve ``directory`` over HTTP on 127.0.0.1:port; yields the base URL."""
    directory.mkdir(parents=True, exist_ok=True)
    server = ThreadingHTTPServer(("127.0.0.1", port), functools.partial(_Quiet, directory=str(directory)))
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()


def _dn(name: x509.Name) -> str:
    short = {
        "countryName": "C",
        "stateOrProvinceName": "ST",
        "localityName": "L",
        "organizationName": "O",
        "commonName": "CN",
    }
    return "".join(f"/{short.get(a.oid._name, a.oid.dotted_string)}={a.value}" for a in name)


@contextlib.contextmanager
def ocsp_responder(workdir: Path, chain: Chain, port: int, revoked: bool) -> Iterator[str]:
    """``openssl ocsp`` answering for the leaf of ``chain`` (good, or revoked), signed by its issuer."""
    workdir.mkdir(parents=True, exist_ok=True)
    leaf, issuer, key = chain.certs[0], chain.certs[1], chain.issuer_key
    assert key is not None
    expiry = leaf.not_valid_after_utc.strftime("%y%m%d%H%M%SZ")
    serial = f"{leaf.serial_number:X}"
    serial = serial if len(serial) % 2 == 0 else "0" + serial
    when = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).strftime("%y%m%d%H%M%SZ")
    status, revoked_at = ("R", when) if revoked else ("V", "")
    (workdir / "index.txt").write_text(
        f"{status}\t{expiry}\t{revoked_at}\t{serial}\tunknown\t{_dn(leaf.subject)}\n"
    )
    (workdir / "issuer.crt").write_bytes(issuer.public_bytes(serialization.Encoding.PEM))
    (workdir / "issuer.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    log = (workdir / "ocsp.log").open("wb")
    # openssl 3.0 takes a bare port here and listens on every interface; only 127.0.0.1 is ever asked.
    # -resp_no_certs: notation (Go's x/crypto/ocsp) rejects a response signed by the issuer that
    # also carries the issuer's own certificate, though RFC 6960 allows it; Referee accepts both.
    args = ["openssl", "ocsp", "-index", str(workdir / "index.txt"), "-port", str(port),
            "-rsigner", str(workdir / "issuer.crt"), "-rkey", str(workdir / "issuer.key"),
            "-CA", str(workdir / "issuer.crt"), "-nmin", "10", "-ignore_err", "-resp_no_certs"]  # fmt: skip
    proc = subprocess.Popen(
        args,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        # openssl ocsp serves one connection at a time and does not survive a bare connect-and-close
        # probe well, so wait for it to say it is listening instead.
        deadline = time.monotonic() + 10
        while (
            time.monotonic() < deadline
            and b"waiting for OCSP client" not in (workdir / "ocsp.log").read_bytes()
        ):
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def unused_url() -> str:
    return f"http://127.0.0.1:{free_port()}/nothing-here"
