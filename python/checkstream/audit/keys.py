"""Keys that seal the decision log: an HMAC-SHA256 secret and/or an Ed25519 key pair.

An HMAC key proves the log was written by someone holding the secret (the verifier needs the same
secret). An Ed25519 signature can be checked by anyone holding only the public key, which is what
an auditor should be given. Each key has a short *key id* that the log records with every entry,
so a verifier can say "sealed with another key" rather than just "bad signature".
"""

from __future__ import annotations

import binascii
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from checkstream.audit.errors import AuditKeyError

__all__ = [
    "MIN_HMAC_KEY_BYTES",
    "SigningKeyLike",
    "VerifyKeyLike",
    "generate_keypair",
    "hmac_key_id",
    "load_hmac_key",
    "load_public_key",
    "load_signing_key",
    "public_key_id",
]

MIN_HMAC_KEY_BYTES = 16

SigningKeyLike = Ed25519PrivateKey | bytes | str | os.PathLike[str]
VerifyKeyLike = Ed25519PublicKey | Ed25519PrivateKey | bytes | str | os.PathLike[str]


def hmac_key_id(key: bytes) -> str:
    # Domain-separated so the id is not simply a hash of the secret used elsewhere.
    return hashlib.sha256(b"checkstream-audit-hmac-key-id\x00" + key).hexdigest()[:16]


def public_key_id(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _read(source: bytes | str | os.PathLike[str], what: str) -> bytes:
    if isinstance(source, bytes):
        return source
    path = Path(source)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise AuditKeyError(f"cannot read {what} {path}: {exc.strerror}") from None


def load_hmac_key(source: bytes | str | os.PathLike[str]) -> bytes:
    """Return an HMAC key: raw ``bytes`` as given, or a file holding the key as hex text."""
    if isinstance(source, bytes):
        key = source
    else:
        text = _read(source, "HMAC key file").strip()
        try:
            key = binascii.unhexlify(text)
        except (binascii.Error, ValueError):
            raise AuditKeyError(
                f"HMAC key file {source} must hold the key as hex text "
                "(e.g. from `checkstream audit keygen --hmac`)"
            ) from None
    if len(key) < MIN_HMAC_KEY_BYTES:
        raise AuditKeyError(
            f"HMAC key has {len(key)} bytes; at least {MIN_HMAC_KEY_BYTES} are needed"
        )
    return key


def load_signing_key(source: SigningKeyLike) -> Ed25519PrivateKey:
    """Return an Ed25519 private key from a key object, PEM bytes/file (PKCS#8) or 32 raw bytes."""
    if isinstance(source, Ed25519PrivateKey):
        return source
    data = _read(source, "signing key")
    if len(data) == 32 and not data.startswith(b"-----"):
        return Ed25519PrivateKey.from_private_bytes(data)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise AuditKeyError(f"signing key is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditKeyError(f"signing key is {type(key).__name__}, not Ed25519")
    return key


def load_public_key(source: VerifyKeyLike) -> Ed25519PublicKey:
    """Return an Ed25519 public key from a key object, PEM bytes/file or 32 raw bytes."""
    if isinstance(source, Ed25519PublicKey):
        return source
    if isinstance(source, Ed25519PrivateKey):
        return source.public_key()
    data = _read(source, "public key")
    if len(data) == 32 and not data.startswith(b"-----"):
        return Ed25519PublicKey.from_public_bytes(data)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise AuditKeyError(f"public key is not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise AuditKeyError(f"public key is {type(key).__name__}, not Ed25519")
    return key


def generate_keypair() -> tuple[bytes, bytes]:
    """Return a new Ed25519 key pair as (private PKCS#8 PEM, public SubjectPublicKeyInfo PEM)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public
