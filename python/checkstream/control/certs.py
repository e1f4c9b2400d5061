"""A throwaway certificate authority for tests and demos: a CA, a server certificate and client
certificates for nodes and admins, made with ``cryptography``.

This is not a PKI. Production certificates come from the bank's own CA (with its revocation,
rotation and key custody); what matters to the control plane is only what it checks:

* the server certificate names the host the nodes connect to (SAN DNS and/or IP);
* a node certificate names its node id as a SAN URI ``urn:checkstream:node:<node_id>`` (node ids
  may hold ``:`` and ``_``, which a DNS name may not), or as a SAN DNS name;
* a certificate for a person or a tool names no node (``urn:checkstream:client:<name>``), so it
  can never be used to post as a node.

Keys are ECDSA P-256: quick to make, and accepted by every TLS stack the nodes may run.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CLIENT_URI_PREFIX",
    "NODE_URI_PREFIX",
    "Issued",
    "issue_client",
    "issue_node",
    "issue_server",
    "make_ca",
    "write_demo_pki",
]

NODE_URI_PREFIX = "urn:checkstream:node:"
CLIENT_URI_PREFIX = "urn:checkstream:client:"
_SKEW = dt.timedelta(minutes=5)  # tolerate a node clock a little behind the CA's


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def write(self, cert_path: Path, key_path: Path) -> None:
        cert_path.write_bytes(self.cert_pem)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(self.key_pem)


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "checkstream (throwaway)"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def make_ca(common_name: str = "checkstream test CA", *, days: int = 30) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - _SKEW)
        .not_valid_after(_now() + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=False, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          key_cert_sign=True, crl_sign=True, encipher_only=False,
                          decipher_only=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def _issue(
    ca: Issued, common_name: str, sans: Sequence[x509.GeneralName], usage: x509.ObjectIdentifier,
    days: int,
) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - _SKEW)
        .not_valid_after(_now() + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def issue_server(
    ca: Issued, dns_names: Iterable[str] = ("localhost",),
    ips: Iterable[str] = ("127.0.0.1", "::1"), *, days: int = 30,
) -> Issued:
    """The control plane's certificate, for the names and addresses nodes connect to."""
    dns = list(dns_names)
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    if not sans:
        raise ValueError("a server certificate needs at least one DNS name or IP address")
    return _issue(ca, dns[0] if dns else str(next(iter(ips))), sans,
                  ExtendedKeyUsageOID.SERVER_AUTH, days)


def issue_node(ca: Issued, node_id: str, *, dns: bool = False, days: int = 30) -> Issued:
    """A node's client certificate: its node id as a SAN URI (or, ``dns=True``, a SAN DNS name)."""
    san: x509.GeneralName = (
        x509.DNSName(node_id) if dns else x509.UniformResourceIdentifier(NODE_URI_PREFIX + node_id)
    )
    return _issue(ca, node_id, [san], ExtendedKeyUsageOID.CLIENT_AUTH, days)


def issue_client(ca: Issued, name: str, *, days: int = 30) -> Issued:
    """A client certificate that names no node (an admin's, a CI job's)."""
    return _issue(ca, name, [x509.UniformResourceIdentifier(CLIENT_URI_PREFIX + name)],
                  ExtendedKeyUsageOID.CLIENT_AUTH, days)


def write_demo_pki(
    out: Path, *, nodes: Iterable[str] = (), clients: Iterable[str] = ("admin",),
    server_names: Iterable[str] = ("localhost",),
    server_ips: Iterable[str] = ("127.0.0.1", "::1"), days: int = 30,
) -> list[Path]:
    """Write ``ca.pem``/``ca.key``, ``server.pem``/``server.key`` and ``<name>.pem``/``.key`` for
    every node and client into ``out``; return the files written (keys are mode 600)."""
    out.mkdir(parents=True, exist_ok=True)
    ca = make_ca(days=days)
    written: list[Path] = []

    def put(issued: Issued, stem: str) -> None:
        issued.write(out / f"{stem}.pem", out / f"{stem}.key")
        written.extend([out / f"{stem}.pem", out / f"{stem}.key"])

    put(ca, "ca")
    put(issue_server(ca, server_names, server_ips, days=days), "server")
    for node in nodes:
        put(issue_node(ca, node, days=days), node)
    for client in clients:
        put(issue_client(ca, client, days=days), client)
    return written
