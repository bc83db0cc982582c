"""A registry token server for tests (no real one runs here), trusted by the real CNCF Distribution.

It implements the distribution token protocol: ``GET /token?service=..&scope=..`` with optional Basic
credentials, and the OAuth2 ``POST /token`` (``grant_type=password`` or ``refresh_token``). Tokens are
ES256 JWTs with an ``x5c`` header; the registry trusts them because the signing certificate is in its
``rootcertbundle``. Users and their repository grants are given at construction.
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from tests.helpers.pki import KeyPair


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class TokenServer:
    signer: KeyPair
    service: str
    issuer: str
    users: Mapping[str, str]  # username -> password
    refresh_tokens: Mapping[str, str] = field(default_factory=dict)  # refresh token -> username
    anonymous_repos: tuple[str, ...] = ()  # repositories anyone may pull
    expires_in: int | None = 300
    requests: list[dict[str, object]] = field(default_factory=list)

    def issue(self, subject: str, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            for item in scope.split(" "):
                parts = item.split(":")
                if len(parts) < 3 or parts[0] != "repository":
                    continue
                name, actions = ":".join(parts[1:-1]), parts[-1].split(",")
                if subject or name in self.anonymous_repos:
                    granted = actions if subject else [a for a in actions if a == "pull"]
                    access.append({"type": "repository", "name": name, "actions": granted})
        now = int(time.time())
        der = self.signer.cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(der).decode("ascii")]}
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + 600,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        key = self.signer.key
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _grant(self, subject: str | None, scopes: list[str]) -> None:
        ts = self.server.token_server
        if subject is None:
            self._answer(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]})
            return
        token = ts.issue(subject, scopes)
        body: dict[str, object] = {"token": token, "access_token": token}
        if ts.expires_in is not None:
            body["expires_in"] = ts.expires_in
        self._answer(200, body)

    def do_GET(self) -> None:
        ts = self.server.token_server
        query = parse_qs(urlsplit(self.path).query)
        auth = self.headers.get("Authorization", "")
        subject: str | None = ""
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            subject = user if ts.users.get(user) == password else None
        ts.requests.append({"method": "GET", "scope": query.get("scope", []), "user": subject})
        self._grant(subject, query.get("scope", []))

    def do_POST(self) -> None:
        ts = self.server.token_server
        length = int(self.headers.get("Content-Length", "0"))
        form = parse_qs(self.rfile.read(length).decode())
        grant = form.get("grant_type", [""])[0]
        subject: str | None = None
        if grant == "refresh_token":
            subject = ts.refresh_tokens.get(form.get("refresh_token", [""])[0])
        elif grant == "password":
            user = form.get("username", [""])[0]
            subject = user if ts.users.get(user) == form.get("password", [""])[0] else None
        ts.requests.append(
            {"method": "POST", "grant": grant, "scope": form.get("scope", []), "user": subject}
        )
        self._grant(subject, form.get("scope", []))


class _Server(ThreadingHTTPServer):
    token_server: TokenServer


def serve_tokens(token_server: TokenServer, tls: KeyPair, port: int) -> tuple[ThreadingHTTPServer, str]:
    """Start the token server over TLS on 127.0.0.1:port; returns the server and its realm URL."""
    server = _Server(("127.0.0.1", port), _Handler)
    server.token_server = token_server
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(Path(tls.cert_path), Path(tls.key_path))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server, f"https://127.0.0.1:{port}/token"
