"""The ``referee`` command line.

Exit codes (the same for every command):
  0  success
  1  the image or one of its artifacts is missing or bad (not found, digest mismatch, over a cap)
  2  bad usage: unknown option, malformed reference, unreadable credentials file
  3  the registry could not be reached or authenticated, or time ran out
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from webhook import __version__
from webhook.errors import (
    ConfigError,
    InvalidReference,
    RefereeError,
    VerificationFailed,
    VerificationInconclusive,
)

if TYPE_CHECKING:
    from webhook.registry import Repository
    from webhook.registry.credentials import Keyring

# Each command imports what it needs when it runs (a `referee verify` process pays for the
# verification modules only, not for signing, YAML or the server); this module stays light.
DEFAULT_MAX_SIGNATURES = (
    100  # notation's default, as webhook.verify.schemes.DEFAULT_MAX_SIGNATURES (a test keeps them equal)
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INCONCLUSIVE = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"referee: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _add_registry_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plain-http", action="store_true", help="talk to the registry over HTTP without TLS")
    p.add_argument("--ca-file", metavar="PEM", help="trust this CA bundle for the registry's TLS certificate")
    p.add_argument(
        "--oci-layout", action="store_true", help="IMAGE is an OCI image layout: PATH:TAG or PATH@DIGEST"
    )
    p.add_argument(
        "--docker-config",
        metavar="FILE",
        help="registry credentials in docker config.json form (default: $DOCKER_CONFIG/config.json "
        "or ~/.docker/config.json when present)",
    )
    p.add_argument(
        "--pull-secret",
        metavar="FILE",
        action="append",
        default=[],
        help="a Kubernetes Secret (JSON) of type kubernetes.io/dockerconfigjson or dockercfg; repeatable",
    )
    p.add_argument("--timeout", metavar="SECONDS", type=float, default=30.0, help="give up after this long")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="referee", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"referee {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    d = sub.add_parser(
        "discover",
        help="show an image's digest and the artifacts that refer to it",
        description="Resolve IMAGE to its digest and print the tree of artifacts (signatures, SBOMs, ...) "
        "that refer to it, found through the registry's referrers API or the referrers tag schema.",
    )
    d.add_argument("image", metavar="IMAGE")
    _add_registry_options(d)
    d.add_argument("--artifact-type", metavar="TYPE", help="list only referrers of this artifact type")
    d.add_argument("--output", choices=("text", "json"), default="text")

    v = sub.add_parser(
        "verify",
        help="verify an image's Notation signatures against a trust policy",
        description="Resolve IMAGE, find its Notation signatures and verify them against the trust policy "
        "and trust store, as notation verify does. Exit 0 when the policy is satisfied.",
    )
    v.add_argument("image", metavar="IMAGE")
    _add_registry_options(v)
    v.add_argument("--trust-policy", metavar="FILE", required=True, help="trustpolicy.json (version 1.0)")
    v.add_argument(
        "--trust-store",
        metavar="DIR",
        required=True,
        help="the folder that holds x509/<type>/<name>/ certificates",
    )
    v.add_argument(
        "--scope",
        metavar="REPO",
        help="the repository the trust policy is matched against (required with --oci-layout; "
        "default: the image's repository)",
    )
    v.add_argument("--max-signatures", metavar="N", type=int, default=DEFAULT_MAX_SIGNATURES)
    v.add_argument(
        "--policy", metavar="FILE",
        help="Referee's policy document (YAML): the statement for the image's repository applies",
    )  # fmt: skip
    v.add_argument(
        "--crl-file", metavar="FILE", action="append", default=[],
        help="a CRL (DER or PEM) to use instead of downloading one; repeatable",
    )  # fmt: skip
    v.add_argument(
        "--offline", action="store_true",
        help="never fetch OCSP or CRLs: revocation is decided from --crl-file alone (air-gapped clusters)",
    )  # fmt: skip
    v.add_argument("--output", choices=("text", "json"), default="text")

    s = sub.add_parser(
        "sign",
        help="sign an image with a key and certificate chain and push the signature",
        description="Make a Notation signature for IMAGE (by the digest its tag resolves to) and push it "
        "as a referrer: through the referrers API, or the referrers tag schema where the registry has none.",
    )
    s.add_argument("image", metavar="IMAGE")
    _add_registry_options(s)
    s.add_argument("--key", metavar="KEY.pem", required=True, help="PEM private key (RSA or ECDSA)")
    s.add_argument(
        "--cert", metavar="CHAIN.pem", required=True, help="PEM chain: signing certificate first, root last"
    )
    s.add_argument("--signature-format", choices=("jws", "cose"), default="jws")
    s.add_argument(
        "--expiry", metavar="DURATION", help="the signature expires after this long, e.g. 24h or 30d"
    )
    s.add_argument(
        "--signing-scheme", choices=("notary.x509", "notary.x509.signingAuthority"), default="notary.x509",
        help="notary.x509 (default), or notary.x509.signingAuthority (the signer vouches for the time)",
    )  # fmt: skip
    s.add_argument(
        "--user-metadata", metavar="KEY=VALUE", action="append", default=[],
        help="signed user metadata (payload annotations), as notation sign --user-metadata; repeatable",
    )  # fmt: skip
    s.add_argument("--timestamp-url", metavar="URL", help="RFC 3161 timestamp authority to countersign with")
    s.add_argument(
        "--timestamp-root", metavar="CERT", help="PEM root certificate of that timestamp authority"
    )

    srv = sub.add_parser(
        "serve",
        help="run the admission webhook (gunicorn, TLS) with a config file",
        description="Serve /validate, /healthz and /readyz under gunicorn with the settings of FILE.",
    )
    srv.add_argument("--config", metavar="FILE", required=True, help="Referee's YAML configuration")
    return parser


def _keyring(args: argparse.Namespace) -> Keyring:
    from webhook.registry.credentials import Keyring  # noqa: PLC0415 (see the top)

    rings = []
    config = args.docker_config
    if config is None:
        default = Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "config.json"
        config = str(default) if default.is_file() else None
    if config is not None:
        rings.append(Keyring.from_docker_config(_read(config), source=config))
    for secret_file in args.pull_secret:
        try:
            secret = json.loads(_read(secret_file))
        except ValueError as exc:
            raise ConfigError(f"{secret_file}: not valid JSON ({exc})") from None
        if not isinstance(secret, dict):
            raise ConfigError(f"{secret_file}: not a Kubernetes Secret object")
        rings.append(Keyring.from_secret(secret))
    return Keyring.merged(rings)


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None


def _open(args: argparse.Namespace) -> tuple[Repository, str, str]:
    """The repository, the normalised image name, and the tag or digest to resolve."""
    from webhook.oci.reference import parse  # noqa: PLC0415 (see the top)
    from webhook.registry.client import ClientSettings, HostSettings, RegistryClient  # noqa: PLC0415
    from webhook.registry.layout import LayoutRepository, split_layout_reference  # noqa: PLC0415

    if args.oci_layout:
        path, target = split_layout_reference(args.image)
        sep = "@" if ":" in target else ":"
        return LayoutRepository(path), f"{path}{sep}{target}", target
    ref = parse(args.image)
    host = HostSettings(plain_http=args.plain_http, ca_file=args.ca_file)
    client = RegistryClient(ClientSettings(default=host), _keyring(args))
    return client.repository(ref), str(ref), ref.target


def _cmd_verify(args: argparse.Namespace) -> int:
    import datetime as dt  # noqa: PLC0415 (each command imports what it needs: see the top)

    from webhook.cli.report import render_verification, verification_json  # noqa: PLC0415
    from webhook.deadline import Deadline  # noqa: PLC0415
    from webhook.oci.reference import parse  # noqa: PLC0415
    from webhook.trust.files import load_trust_policy, load_trust_store  # noqa: PLC0415
    from webhook.trust.revocation import HttpRevocationSource  # noqa: PLC0415
    from webhook.verify.image import verify_image  # noqa: PLC0415
    from webhook.verify.policy import PolicyDocument, read_policy_document  # noqa: PLC0415
    from webhook.verify.schemes import NotaryScheme, Trust  # noqa: PLC0415

    policy = load_trust_policy(Path(args.trust_policy))
    store = load_trust_store(Path(args.trust_store), policy)
    statements = read_policy_document(Path(args.policy)) if args.policy else PolicyDocument()
    if args.max_signatures <= 0:
        raise ConfigError("--max-signatures must be positive")
    repo, image, target = _open(args)
    if args.oci_layout and not args.scope:
        raise ConfigError(
            "--scope REPO is required with --oci-layout (the repository the policy is matched against)"
        )
    scope = args.scope or parse(args.image).name
    now = dt.datetime.now(dt.UTC)
    deadline = Deadline.after(args.timeout)
    source = HttpRevocationSource(network=not args.offline, crl_files=[Path(f) for f in args.crl_file])
    scheme = NotaryScheme(Trust(policy, store, now, args.max_signatures, source.within(deadline)))
    result = verify_image(
        repo, image, target, scope=scope, scheme=scheme, deadline=deadline, statement=statements.select(scope)
    )
    if args.output == "json":
        print(json.dumps(verification_json(result), indent=2))
    else:
        print(render_verification(result))
    return EXIT_OK if result.verified else EXIT_FAILED


def _cmd_sign(args: argparse.Namespace) -> int:
    import datetime as dt  # noqa: PLC0415 (each command imports what it needs: see the top)

    from webhook.cli.sign import (  # noqa: PLC0415
        TimestampAuthority,
        load_signing_key,
        parse_duration,
        parse_user_metadata,
        sign_image,
    )
    from webhook.deadline import Deadline  # noqa: PLC0415
    from webhook.notary.envelope import COSE, JWS  # noqa: PLC0415
    from webhook.notary.truststore import parse_certificates  # noqa: PLC0415
    from webhook.oci.reference import parse  # noqa: PLC0415
    from webhook.registry.client import ClientSettings, HostSettings, RegistryClient  # noqa: PLC0415

    if args.oci_layout:
        raise ConfigError("referee sign writes to registries only; --oci-layout is not supported")
    signing_key = load_signing_key(Path(args.key), Path(args.cert))
    tsa = None
    if bool(args.timestamp_url) != bool(args.timestamp_root):
        raise ConfigError("--timestamp-url and --timestamp-root go together")
    if args.timestamp_url:
        if args.signing_scheme != "notary.x509":
            raise ConfigError("timestamps countersign notary.x509 signatures only")
        roots = parse_certificates(_read(args.timestamp_root), args.timestamp_root)
        tsa = TimestampAuthority(args.timestamp_url, roots[0])
    expiry = parse_duration(args.expiry) if args.expiry else None
    ref = parse(args.image)
    host = HostSettings(plain_http=args.plain_http, ca_file=args.ca_file)
    client = RegistryClient(ClientSettings(default=host), _keyring(args))
    envelope = JWS if args.signature_format == "jws" else COSE
    signed = sign_image(
        client.repository(ref),
        client.pusher(ref),
        ref.target,
        signing_key,
        envelope_type=envelope,
        now=dt.datetime.now(dt.UTC),
        expiry=expiry,
        deadline=Deadline.after(args.timeout),
        scheme=args.signing_scheme,
        tsa=tsa,
        user_metadata=parse_user_metadata(args.user_metadata),
    )
    print(f"Signed {ref.name}@{signed.subject}")
    print(f"  signature {signed.signature} ({envelope})")
    return EXIT_OK


def _cmd_serve(args: argparse.Namespace) -> int:
    from webhook.server.serve import serve  # noqa: PLC0415 (gunicorn and flask only for this command)

    serve(Path(args.config))
    return EXIT_OK


def _cmd_discover(args: argparse.Namespace) -> int:
    from webhook.cli.discover import discover, render_text  # noqa: PLC0415 (see the top)
    from webhook.deadline import Deadline  # noqa: PLC0415

    repo, image, target = _open(args)
    result = discover(repo, image, target, Deadline.after(args.timeout), artifact_type=args.artifact_type)
    if args.output == "json":
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(render_text(result))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if getattr(args, "timeout", 1.0) <= 0:
        parser.error("--timeout must be positive")
    try:
        command = {"verify": _cmd_verify, "sign": _cmd_sign, "discover": _cmd_discover, "serve": _cmd_serve}[
            args.command
        ]
        return int(command(args))
    except (InvalidReference, ConfigError) as exc:
        print(f"referee: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except VerificationFailed as exc:
        print(f"referee: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except VerificationInconclusive as exc:
        print(f"referee: error: {exc}", file=sys.stderr)
        return EXIT_INCONCLUSIVE
    except RefereeError as exc:  # any other deliberate error is a failure, never a success
        print(f"referee: error: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
