"""Certificates for Temporal over mutual TLS (README: "Temporal over mutual TLS").

    python deploy/tls/make_certs.py deploy/secrets/tls      # once; never committed

Writes a private CA and one certificate + key per identity, each in its own directory (mount
only its own into each container):

    ca/ca.pem (ca/ca.key stays offline)      the CA the server trusts for clients, and clients
                                             trust for the server
    temporal/{tls.crt,tls.key}              the Temporal server (DNS: temporal, localhost)
    worker/                                 writeback workers: poll, complete tasks, start child
                                            workflows
    caller/                                 calling services (WritebackClient): start, update,
                                            query
    operator/                               operators' CLI (review, status): query, update
    ui/                                     the Web UI server
    admin/                                  temporal admin tools (search attributes, namespaces)

Certificates live 397 days (keys: EC P-256); run again with --renew to replace them, then
restart the services. Needs only the `cryptography` package (in the writeback image).

Keys are written 0600. docker compose bind-mounts secret files as they are, and Temporal's and
the UI's images run as their own users: on a single-host compose setup either give each key to
its service's uid (chown), or write them world-readable with --readable (isolation then rests on
which files each container mounts). Kubernetes Secrets set their own modes.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DAYS = 397
#: identity -> (DNS names it is served under; None: a client only)
IDENTITIES: dict[str, list[str] | None] = {
    "temporal": ["temporal", "localhost", "temporal-frontend.temporal.svc.cluster.local"],
    "worker": None,
    "caller": None,
    "operator": None,
    "ui": None,
    "admin": None,
}


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "writeback"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


KEY_MODE = 0o600


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, KEY_MODE if private else 0o644)
    with os.fdopen(fd, "wb") as file:
        file.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_ca(out: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("writeback temporal CA"))
        .issuer_name(_name("writeback temporal CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=DAYS * 3))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write(out / "ca" / "ca.pem", cert.public_bytes(serialization.Encoding.PEM))
    _write(out / "ca" / "ca.key", _key_pem(key), private=True)
    os.chmod(out / "ca" / "ca.key", 0o600)  # the CA's key is never shared
    return cert, key


def issue(
    out: Path,
    identity: str,
    dns: list[str] | None,
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if dns else [])
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(f"writeback-{identity}" if identity != "temporal" else "temporal"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if dns:
        names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns]
        names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write(out / identity / "tls.crt", cert.public_bytes(serialization.Encoding.PEM))
    _write(out / identity / "tls.key", _key_pem(key), private=True)
    _write(out / identity / "ca.pem", ca.public_bytes(serialization.Encoding.PEM))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="directory (e.g. deploy/secrets/tls)")
    parser.add_argument("--renew", action="store_true", help="replace existing certificates")
    parser.add_argument(
        "--readable", action="store_true", help="service keys 0644 (single-host compose)"
    )
    args = parser.parse_args()
    global KEY_MODE
    if args.readable:
        KEY_MODE = 0o644
    if (args.out / "ca" / "ca.pem").exists() and not args.renew:
        raise SystemExit(f"{args.out} already holds certificates (--renew replaces them)")
    ca, ca_key = make_ca(args.out)
    for identity, dns in IDENTITIES.items():
        issue(args.out, identity, dns, ca, ca_key)
    print(f"CA and {len(IDENTITIES)} certificates in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
