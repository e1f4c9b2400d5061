"""Bearer tokens for the control plane: admins (upload, fleet, export) and nodes (poll, heartbeat).

Tokens are kept as SHA-256 digests (a file may list ``sha256:<hex>`` instead of the token) and
looked up by digest. Missing or unknown credentials are 401; a valid token used where its role or
node id does not reach is 403. Browsers may send the admin token as the Basic-auth password.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

__all__ = ["ANY_NODE", "AuthError", "Principal", "Tokens", "load_node_tokens"]

ANY_NODE = "*"  # a node-token entry valid for every node id (a fleet-wide enrolment token)
MIN_TOKEN_CHARS = 16


class AuthError(Exception):
    def __init__(self, status: Literal[401, 403], message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Principal:
    role: Literal["admin", "node"]
    node_id: str | None = None  # for a node: its id, or ANY_NODE


def _digest(entry: str) -> str:
    if entry.startswith("sha256:"):
        return entry[7:].lower()
    if len(entry) < MIN_TOKEN_CHARS:
        raise ValueError(f"tokens must be at least {MIN_TOKEN_CHARS} characters")
    return hashlib.sha256(entry.encode("utf-8")).hexdigest()


class Tokens:
    def __init__(self, admin: Iterable[str], nodes: Mapping[str, str]) -> None:
        self._by_digest: dict[str, Principal] = {}
        for token in admin:
            self._by_digest[_digest(token)] = Principal("admin")
        for node_id, token in nodes.items():
            self._by_digest[_digest(token)] = Principal("node", node_id)

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

    def node(self, authorization: str | None, node_id: str) -> Principal:
        p = self.identify(authorization)
        if p.role != "node":
            raise AuthError(403, "heartbeats need a node token")
        if p.node_id not in (node_id, ANY_NODE):
            raise AuthError(403, f"this token belongs to node {p.node_id!r}, not {node_id!r}")
        return p

    def reader(self, authorization: str | None) -> Principal:
        return self.identify(authorization)  # any admin or node may fetch bundles


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


def load_node_tokens(path: str | os.PathLike[str]) -> dict[str, str]:
    """A YAML mapping ``node_id: token`` (``"*"`` for a token every node may use)."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise ValueError(f"{path}: node tokens must be a YAML mapping of node_id: token")
    return data
