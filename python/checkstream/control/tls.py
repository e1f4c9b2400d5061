"""TLS for the control plane: the server's settings, the nodes' client context, and the node ids a
client certificate proves.

Server: ``--tls-cert``/``--tls-key`` serve HTTPS; adding ``--client-ca`` makes it mutual TLS: the
handshake requires a client certificate that chains to that CA (no certificate, or one from
another CA, and the connection is refused before any HTTP is read). The context is built by
Hypercorn's own ``Config.create_ssl_context`` (TLS 1.2+, its cipher list, ALPN h2/http1.1), so the
control plane runs the same TLS settings as any Hypercorn deployment.

Identity: a verified client certificate proves the node ids it names (:func:`cert_node_ids`). The
server sees the certificate through the ASGI TLS extension (``scope["extensions"]["tls"]``),
which :mod:`checkstream.control.serving` fills in since Hypercorn does not yet.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID
from hypercorn.config import Config as HypercornConfig

from checkstream.control.certs import NODE_URI_PREFIX

__all__ = ["ServerTLS", "TLSConfigError", "cert_node_ids", "client_context", "peer_node_ids"]


class TLSConfigError(ValueError):
    """A certificate, key or CA file that cannot be used; the message names the option."""


@dataclass(frozen=True, slots=True)
class ServerTLS:
    cert: Path
    key: Path
    client_ca: Path | None = None  # given: mutual TLS, a client certificate is required

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None

    def apply(self, cfg: HypercornConfig) -> HypercornConfig:
        cfg.certfile = str(self.cert)
        cfg.keyfile = str(self.key)
        if self.client_ca is not None:
            cfg.ca_certs = str(self.client_ca)
            cfg.verify_mode = ssl.CERT_REQUIRED
        return cfg

    def context(self, cfg: HypercornConfig | None = None) -> ssl.SSLContext:
        """The server context, checked now so that a bad file fails at start-up with its name."""
        for option, path in (("--tls-cert", self.cert), ("--tls-key", self.key),
                             ("--client-ca", self.client_ca)):
            if path is not None and not path.is_file():
                raise TLSConfigError(f"{option} {path}: no such file")
        try:
            ctx = self.apply(cfg or HypercornConfig()).create_ssl_context()
        except ssl.SSLError as exc:
            raise TLSConfigError(
                f"cannot load the TLS certificate/key/CA ({self.cert}, {self.key}, "
                f"{self.client_ca}): {exc.reason or exc}") from None
        assert ctx is not None  # certfile and keyfile are set
        return ctx


def client_context(
    ca: Path | None = None, cert: Path | None = None, key: Path | None = None
) -> ssl.SSLContext:
    """A node's context: trust ``ca`` (else the system's store) and present ``cert``/``key``."""
    if (cert is None) != (key is None):
        raise TLSConfigError("give both --cert and --key (the node's client certificate)")
    try:
        ctx = ssl.create_default_context(cafile=str(ca) if ca is not None else None)
    except (OSError, ssl.SSLError) as exc:
        raise TLSConfigError(f"--ca {ca}: cannot load it as PEM CA certificates: {exc}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None and key is not None:
        try:
            ctx.load_cert_chain(str(cert), str(key))
        except (OSError, ssl.SSLError) as exc:
            raise TLSConfigError(
                f"--cert {cert} / --key {key}: not a matching PEM certificate and key: {exc}"
            ) from None
    return ctx


@functools.lru_cache(maxsize=1024)  # one parse per certificate, not per request
def cert_node_ids(pem: str) -> frozenset[str]:
    """The node ids a certificate names: SAN URIs ``urn:checkstream:node:<id>`` and SAN DNS
    names; the subject CN only when the certificate has no SAN at all (RFC 6125's rule: a CN is
    the legacy fallback, never an addition to SANs)."""
    cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return frozenset(str(a.value) for a in cns)
    ids = {u[len(NODE_URI_PREFIX):] for u in san.get_values_for_type(
        x509.UniformResourceIdentifier) if u.startswith(NODE_URI_PREFIX)}
    ids.update(san.get_values_for_type(x509.DNSName))
    return frozenset(i for i in ids if i)


def peer_node_ids(scope: Mapping[str, Any]) -> frozenset[str] | None:
    """The node ids the request's verified client certificate names; None when the request came
    without one (plain HTTP, or TLS without client certificates)."""
    tls = scope.get("extensions", {}).get("tls")
    if not tls or not tls.get("client_cert_chain"):
        return None
    return cert_node_ids(tls["client_cert_chain"][0])
