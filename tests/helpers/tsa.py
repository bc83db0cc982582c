"""A local RFC 3161 timestamping authority: ``openssl ts -reply`` behind a small HTTP front.

The timestamps are made by the real OpenSSL TSA; the HTTP wrapper only carries the request to it and
the reply back (``POST``, ``application/timestamp-query`` in, ``application/timestamp-reply`` out).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.helpers.codesign import PrivateKey, _key_usage, make_root, new_key, subject


@dataclass(frozen=True)
class Tsa:
    url: str
    root: x509.Certificate
    root_path: Path
    cert: x509.Certificate  # the TSA's own certificate, issued by the root
    root_key: PrivateKey  # signs CRLs and OCSP answers about ``cert``


def _write_pki(d: Path, crl_url: str | None) -> tuple[x509.Certificate, x509.Certificate, PrivateKey]:
    now = dt.datetime.now(dt.UTC)
    root_key, root = make_root("Referee Test TSA Root")
    root_name = root.subject
    tsa_key = new_key("rsa-2048")
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject("Referee Test TSA"))
        .issuer_name(root_name)
        .public_key(tsa_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(sign=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
    )
    if crl_url:
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(crl_url)], None, None, None)
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    tsa = builder.sign(root_key, hashes.SHA384())
    pem = serialization.Encoding.PEM
    (d / "root.pem").write_bytes(root.public_bytes(pem))
    (d / "tsa.crt").write_bytes(tsa.public_bytes(pem))
    (d / "chain.pem").write_bytes(tsa.public_bytes(pem) + root.public_bytes(pem))
    (d / "tsa.key").write_bytes(
        tsa_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (d / "serial").write_text("01\n")
    (d / "openssl.cnf").write_text(f"""
[ tsa ]
default_tsa = tsa_config
[ tsa_config ]
dir = {d}
serial = {d}/serial
signer_cert = {d}/tsa.crt
certs = {d}/root.pem
signer_key = {d}/tsa.key
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = yes
tsa_name = no
ess_cert_id_chain = no
ess_cert_id_alg = sha256
""")
    return root, tsa, root_key


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        query = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        d = self.server.pki_dir
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "q.tsq").write_bytes(query)
            proc = subprocess.run(
                [
                    "openssl",
                    "ts",
                    "-reply",
                    "-config",
                    str(d / "openssl.cnf"),
                    "-queryfile",
                    f"{tmp}/q.tsq",
                    "-out",
                    f"{tmp}/r.tsr",
                ],
                capture_output=True,
                timeout=30,
                check=False,
            )
            reply = (Path(tmp) / "r.tsr").read_bytes() if proc.returncode == 0 else b""
        if not reply:
            self.send_response(500)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/timestamp-reply")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


class _Server(ThreadingHTTPServer):
    pki_dir: Path
    daemon_threads = True


@contextlib.contextmanager
def local_tsa(workdir: Path, *, crl_url: str | None = None) -> Iterator[Tsa]:
    """The TSA; with ``crl_url``, its certificate names that CRL distribution point."""
    workdir.mkdir(parents=True, exist_ok=True)
    root, cert, root_key = _write_pki(workdir, crl_url)
    server = _Server(("127.0.0.1", 0), _Handler)
    server.pki_dir = workdir
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield Tsa(f"http://127.0.0.1:{server.server_address[1]}/", root, workdir / "root.pem", cert, root_key)
    finally:
        server.shutdown()
        server.server_close()
