"""Who may do what on the control plane: admins (upload, release, fleet, export) hold bearer
tokens; nodes (poll, heartbeat, evidence) hold a node token, a client certificate, or both.

Tokens are kept as SHA-256 digests (a file may list ``sha256:<hex>`` instead of the token) and
looked up by digest. Admin tokens carry a label (``--admin-tokens`` maps label: token), which is
what the release history records as "who". Missing or unknown credentials are 401; a valid
credential used where its role or node id does not reach is 403. Browsers may send the admin token
as the Basic-auth password.

Under mutual TLS (``--client-ca``) a node's certificate is its identity: the node id in a node
route must be one the certificate names (else 403, whatever token comes with it). Node tokens are
then a second factor, required if and only if the server was given any (``--node-tokens``):
with them, a stolen certificate alone is not enough, and without them, no shared secret has to be
handed out to nodes at all. Admin routes always need an admin token (a certificate proves
membership of the fleet's PKI, not an operator's role).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

__all__ = ["ANY_NODE", "AuthError", "Principal", "Tokens", "load_admin_tokens", "load_node_tokens"]

ANY_NODE = "*"  # a node-token entry valid for every node id (a fleet-wide enrolment token)
MIN_TOKEN_CHARS = 16
LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


class AuthError(Exception):
    def __init__(self, status: Literal[401, 403], message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Principal:
    role: Literal["admin", "node"]
    node_id: str | None = None  # for a node: its id, or ANY_NODE
    label: str = "admin"  # for an admin: the token's label (recorded in the release history)


def _digest(entry: str) -> str:
    if entry.startswith("sha256:"):
        return entry[7:].lower()
    if len(entry) < MIN_TOKEN_CHARS:
        raise ValueError(f"tokens must be at least {MIN_TOKEN_CHARS} characters")
    return hashlib.sha256(entry.encode("utf-8")).hexdigest()


class Tokens:
    """``admin``: tokens (each labelled "admin") or a mapping label: token; ``nodes``: a mapping
    node_id: token (``"*"``: any node)."""

    def __init__(self, admin: Iterable[str] | Mapping[str, str], nodes: Mapping[str, str]) -> None:
        self._by_digest: dict[str, Principal] = {}
        labelled = admin.items() if isinstance(admin, Mapping) else (("admin", t) for t in admin)
        for label, token in labelled:
            self._by_digest[_digest(token)] = Principal("admin", label=label)
        for node_id, token in nodes.items():
            self._by_digest[_digest(token)] = Principal("node", node_id)
        self.node_tokens = bool(nodes)  # under mutual TLS: a second factor for nodes

    def identify(self, authorization: str | None) -> Principal:
        token = _token(authorization)
        if token is None:
            raise AuthError(401, "missing credentials: send Authorization: Bearer <token>")
        principal = self._by_digest.get(hashlib.sha256(token.encode("utf-8")).hexdigest())
        if principal is None:
            raise AuthError(401, "unknown token")
        return principal

    def admin(self, authorization: str | None) -> Principal:
        p = self.identify(authorization)
        if p.role != "admin":
            raise AuthError(403, "this needs an admin token")
        return p

    def node(
        self, authorization: str | None, node_id: str, cert_ids: frozenset[str] | None = None
    ) -> Principal:
        """A node acting as ``node_id``; ``cert_ids``: the node ids its verified client
        certificate names (None: no certificate, i.e. not mutual TLS)."""
        if cert_ids is not None:
            if node_id not in cert_ids:
                named = ", ".join(repr(i) for i in sorted(cert_ids)) or "no node id"
                raise AuthError(403, f"the client certificate names {named}, not {node_id!r}")
            if not self.node_tokens:
                return Principal("node", node_id, label=f"cert:{node_id}")
        p = self.identify(authorization)
        if p.role != "node":
            raise AuthError(403, "this route needs a node's credentials")
        if p.node_id not in (node_id, ANY_NODE):
            raise AuthError(403, f"this token belongs to node {p.node_id!r}, not {node_id!r}")
        return p

    def reader(
        self, authorization: str | None, cert_ids: frozenset[str] | None = None
    ) -> Principal:
        """Any admin or node may fetch bundles; under mutual TLS without node tokens, a
        certificate that names a node is enough."""
        if cert_ids is not None and not authorization:
            if self.node_tokens:
                raise AuthError(401, "missing credentials: this control plane needs a node "
                                "token besides the client certificate (Authorization: Bearer)")
            if not cert_ids:
                raise AuthError(403, "the client certificate names no node id (and no token "
                                "was sent)")
            return Principal("node", ANY_NODE, label="cert")
        return self.identify(authorization)


def _token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


def _load_mapping(path: str | os.PathLike[str], what: str, key: str) -> dict[str, str]:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise ValueError(f"{path}: {what} must be a YAML mapping of {key}: token")
    return data


def load_node_tokens(path: str | os.PathLike[str]) -> dict[str, str]:
    """A YAML mapping ``node_id: token`` (``"*"`` for a token every node may use)."""
    return _load_mapping(path, "node tokens", "node_id")


def load_admin_tokens(path: str | os.PathLike[str]) -> dict[str, str]:
    """A YAML mapping ``label: token``; the label is recorded as who released what."""
    labels = _load_mapping(path, "admin tokens", "label")
    for label in labels:
        if not LABEL.match(label):
            raise ValueError(f"{path}: admin label {label!r} must match {LABEL.pattern}")
    return labels
