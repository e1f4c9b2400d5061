"""Tenants: who is calling, decided only by things the caller has proved.

A tenant is chosen by the API key the client authenticated with (compared in constant time,
by SHA-256) or by the URL path prefix (``/acme/v1/...``). A path-prefixed tenant that lists
keys also requires one of them. Headers such as ``X-Tenant-ID`` are never consulted: anyone
can set them. Calls that match no tenant belong to ``default`` (the top-level config).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from checkstream.proxy.config import BackendConfig, PoliciesConfig, ProxyConfig

DEFAULT_TENANT = "default"


class TenantError(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class Tenant:
    name: str
    backend: BackendConfig
    policies: PoliciesConfig
    key_hashes: frozenset[bytes] = frozenset()
    path_prefix: str | None = None

    @property
    def authenticates(self) -> bool:
        """True when the client's key is a proxy credential (never forwarded upstream)."""
        return bool(self.key_hashes)


def _hash_key(key: str) -> bytes:
    if key.startswith("sha256:"):
        return bytes.fromhex(key[7:])
    return hashlib.sha256(key.encode()).digest()


def client_key(headers: Mapping[str, str]) -> str | None:
    """The credential an OpenAI, Azure or Anthropic client sends."""
    auth = headers.get("authorization") or headers.get("Authorization")
    if auth and auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    for name in ("x-api-key", "api-key"):
        v = headers.get(name)
        if v:
            return v.strip()
    return None


class TenantResolver:
    def __init__(self, config: ProxyConfig) -> None:
        self.default = Tenant(DEFAULT_TENANT, config.backend, config.policies)
        self.tenants: list[Tenant] = [
            Tenant(
                t.name,
                t.backend or config.backend,
                t.policies or config.policies,
                frozenset(_hash_key(k) for k in t.api_keys),
                t.path_prefix,
            )
            for t in config.tenants
        ]
        self.by_prefix = {t.path_prefix: t for t in self.tenants if t.path_prefix}

    def all(self) -> list[Tenant]:
        return [self.default, *self.tenants]

    def _by_key(self, key: str | None) -> Tenant | None:
        if key is None:
            return None
        digest = hashlib.sha256(key.encode()).digest()
        found = None
        for t in self.tenants:
            for h in t.key_hashes:
                if hmac.compare_digest(h, digest):
                    found = t
        return found

    def resolve(self, prefix: str | None, headers: Mapping[str, str]) -> Tenant:
        key_tenant = self._by_key(client_key(headers))
        if prefix is not None:
            tenant = self.by_prefix.get("/" + prefix)
            if tenant is None:
                raise TenantError(404, "unknown_tenant", f"no tenant is served under /{prefix}")
            if tenant.key_hashes and key_tenant is not tenant:
                raise TenantError(401, "invalid_api_key",
                                  f"tenant {tenant.name!r} requires one of its API keys")
            return tenant
        return key_tenant or self.default
