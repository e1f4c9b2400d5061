"""Policy bundles: a policy directory as one signed, content-addressed JSON document.

A bundle is canonical JSON (:mod:`checkstream.audit.canonical`), so building it twice from the
same directory gives the same bytes::

    {"format": "checkstream-bundle/1",
     "manifest": {"format": "checkstream-bundle/1", "policy_version": "<PolicySet.version>",
                  "content_sha256": "<sha256 of the canonical file table>",
                  "files": {"policy.yaml": {"sha256": "...", "size": 1234}, ...}},
     "files": {"policy.yaml": "<base64>", ...},
     "signature": {"alg": "ed25519", "key_id": "<16 hex>", "value": "<base64>"}}

The bundle's version *is* the version of the PolicySet it loads into (the set's content hash), so
the version a node reports running can be compared with the control plane's latest directly.
The Ed25519 signature covers the manifest, and the manifest pins every file by SHA-256; a node
trusts nothing it has not checked in this order: signature (with its pinned key), file hashes,
content hash, then a full policy load whose version must equal the manifest's. Any failure is a
:class:`BundleError` with a ``reason`` and a precise message; nothing is swapped in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from checkstream.audit.canonical import canonical_json
from checkstream.audit.errors import AuditKeyError
from checkstream.audit.keys import (
    SigningKeyLike,
    VerifyKeyLike,
    load_public_key,
    load_signing_key,
    public_key_id,
)
from checkstream.policy import PolicyError, PolicySet, load_policy_set
from checkstream.policy.loader import RegistryLike

__all__ = [
    "BUNDLE_FORMAT",
    "MAX_BUNDLE_BYTES",
    "Bundle",
    "BundleError",
    "build_bundle",
    "load_bundle",
    "sign_bundle",
    "verify_bundle",
    "verify_signature",
]

BUNDLE_FORMAT = "checkstream-bundle/1"
MAX_BUNDLE_BYTES = 16 * 1024 * 1024
MAX_FILES = 2000
# Domain separation: a bundle signature can never be replayed as a decision-log signature.
_SIGNING_PREFIX = b"checkstream-policy-bundle-v1\x00"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

Reason = Literal[
    "malformed",  # not a bundle document, or an unsafe path
    "unsigned",
    "wrong_key",  # signed, but not by the pinned key
    "bad_signature",
    "hash_mismatch",  # a file or the content hash does not match the manifest
    "invalid_policy",  # the files do not load as a PolicySet
    "version_mismatch",  # they load, but not into the version the manifest names
]


class BundleError(ValueError):
    """A bundle failed a check; ``reason`` says which, the message says exactly what."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason


@dataclass(frozen=True, slots=True)
class Signature:
    key_id: str
    value: bytes
    alg: str = "ed25519"


@dataclass(frozen=True, slots=True)
class Bundle:
    manifest: Mapping[str, Any]
    files: Mapping[str, bytes]
    signature: Signature | None = None

    @property
    def version(self) -> str:
        return str(self.manifest["policy_version"])

    @property
    def content_sha256(self) -> str:
        return str(self.manifest["content_sha256"])

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "format": BUNDLE_FORMAT,
            "manifest": dict(self.manifest),
            "files": {p: base64.b64encode(b).decode("ascii") for p, b in self.files.items()},
        }
        if self.signature is not None:
            doc["signature"] = {
                "alg": self.signature.alg,
                "key_id": self.signature.key_id,
                "value": base64.b64encode(self.signature.value).decode("ascii"),
            }
        return doc

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_json())

    @classmethod
    def from_bytes(cls, data: bytes) -> Bundle:
        """Parse a bundle document (structure only: nothing is verified yet)."""
        if len(data) > MAX_BUNDLE_BYTES:
            raise BundleError("malformed", f"bundle is {len(data)} bytes; the limit is "
                              f"{MAX_BUNDLE_BYTES}")
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, ValueError) as exc:
            raise BundleError("malformed", f"bundle is not JSON: {exc}") from None
        return cls.from_json(doc)

    @classmethod
    def from_json(cls, doc: Any) -> Bundle:
        if not isinstance(doc, dict) or doc.get("format") != BUNDLE_FORMAT:
            raise BundleError("malformed", f"not a {BUNDLE_FORMAT} document")
        extra = set(doc) - {"format", "manifest", "files", "signature"}
        if extra:
            raise BundleError("malformed", f"unknown bundle field(s): {', '.join(sorted(extra))}")
        manifest = _manifest(doc.get("manifest"))
        raw_files = doc.get("files")
        if not isinstance(raw_files, dict):
            raise BundleError("malformed", "bundle.files must be an object of path: base64")
        files: dict[str, bytes] = {}
        for path, text in raw_files.items():
            _check_path(path)
            if not isinstance(text, str):
                raise BundleError("malformed", f"files[{path!r}] is not a base64 string")
            files[path] = _b64(text, f"files[{path!r}]")
        signature = None
        sig = doc.get("signature")
        if sig is not None:
            if (
                not isinstance(sig, dict)
                or set(sig) != {"alg", "key_id", "value"}
                or not all(isinstance(v, str) for v in sig.values())
            ):
                raise BundleError("malformed", "signature must be {alg, key_id, value} strings")
            if sig["alg"] != "ed25519":
                raise BundleError("malformed", f"unsupported signature alg {sig['alg']!r}")
            signature = Signature(sig["key_id"], _b64(sig["value"], "signature.value"))
        return cls(manifest, files, signature)

    def unpack(self, dest: Path) -> None:
        """Write the files under ``dest`` (created; must not hold other files)."""
        dest.mkdir(parents=True, exist_ok=True)
        for path, data in self.files.items():
            _check_path(path)
            target = dest.joinpath(*PurePosixPath(path).parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)


# --------------------------------------------------------------------------- building


def collect_files(policy_dir: str | os.PathLike[str]) -> dict[str, bytes]:
    """Every regular file under ``policy_dir`` (dot-files and caches left out), sorted."""
    root = Path(policy_dir)
    if not root.is_dir():
        raise BundleError("malformed", f"{root} is not a directory")
    files: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            continue
        if path.is_file():
            files[rel.as_posix()] = path.read_bytes()
    if len(files) > MAX_FILES:
        raise BundleError("malformed", f"{root} holds {len(files)} files; the limit is {MAX_FILES}")
    return files


def file_table(files: Mapping[str, bytes]) -> dict[str, dict[str, Any]]:
    return {
        p: {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b)}
        for p, b in sorted(files.items())
    }


def content_hash(table: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(dict(table))).hexdigest()


def build_bundle(
    policy_dir: str | os.PathLike[str], *, registry: RegistryLike | None = None
) -> Bundle:
    """An unsigned bundle of ``policy_dir``, checked by loading the files as the node will
    (from an unpacked copy, so a phrase file outside the directory is caught here)."""
    files = collect_files(policy_dir)
    table = file_table(files)
    provisional = Bundle(
        {"format": BUNDLE_FORMAT, "policy_version": "0" * 64,
         "content_sha256": content_hash(table), "files": table},
        files,
    )
    with tempfile.TemporaryDirectory(prefix="checkstream-bundle-") as tmp:
        policy_set = _load_files(provisional, Path(tmp), registry)
    return replace(provisional, manifest={**provisional.manifest,
                                          "policy_version": policy_set.version})


# --------------------------------------------------------------------------- signing


def _signed_bytes(manifest: Mapping[str, Any]) -> bytes:
    return _SIGNING_PREFIX + canonical_json(dict(manifest))


def sign_bundle(bundle: Bundle, key: SigningKeyLike) -> Bundle:
    """The bundle with an Ed25519 signature over its manifest (any old signature replaced)."""
    private: Ed25519PrivateKey = load_signing_key(key)
    signature = Signature(public_key_id(private.public_key()),
                          private.sign(_signed_bytes(bundle.manifest)))
    return replace(bundle, signature=signature)


def verify_signature(bundle: Bundle, key: VerifyKeyLike) -> None:
    public: Ed25519PublicKey = load_public_key(key)
    if bundle.signature is None:
        raise BundleError("unsigned", f"bundle {bundle.version[:12]} is not signed")
    expected = public_key_id(public)
    if bundle.signature.key_id != expected:
        raise BundleError(
            "wrong_key",
            f"bundle {bundle.version[:12]} is signed with key {bundle.signature.key_id}, "
            f"not the pinned key {expected}",
        )
    try:
        public.verify(bundle.signature.value, _signed_bytes(bundle.manifest))
    except InvalidSignature:
        raise BundleError(
            "bad_signature",
            f"bundle {bundle.version[:12]}: the signature does not match the manifest "
            f"(key {expected}); the manifest was altered or the signature forged",
        ) from None


# --------------------------------------------------------------------------- verifying


def check_contents(bundle: Bundle) -> None:
    """Every file is the one the manifest names, byte for byte, and nothing else is there."""
    table = bundle.manifest["files"]
    missing = sorted(set(table) - set(bundle.files))
    extra = sorted(set(bundle.files) - set(table))
    if missing or extra:
        raise BundleError(
            "hash_mismatch",
            "files differ from the manifest: "
            + "; ".join(
                s for s in (f"missing {missing}" if missing else "",
                            f"not in manifest {extra}" if extra else "") if s
            ),
        )
    for path, data in sorted(bundle.files.items()):
        entry = table[path]
        digest = hashlib.sha256(data).hexdigest()
        if digest != entry["sha256"] or len(data) != entry["size"]:
            raise BundleError(
                "hash_mismatch",
                f"file {path!r}: sha256 {digest[:16]}… ({len(data)} bytes) does not match the "
                f"manifest's {entry['sha256'][:16]}… ({entry['size']} bytes)",
            )
    actual = content_hash(table)
    if actual != bundle.content_sha256:
        raise BundleError(
            "hash_mismatch",
            f"content hash {actual[:16]}… does not match the manifest's "
            f"{bundle.content_sha256[:16]}…",
        )


def load_bundle(
    bundle: Bundle, dest: Path, *, registry: RegistryLike | None = None
) -> PolicySet:
    """Unpack into ``dest`` and load: the set's version must be the manifest's."""
    policy_set = _load_files(bundle, dest, registry)
    if policy_set.version != bundle.version:
        raise BundleError(
            "version_mismatch",
            f"files load as policy version {policy_set.short_version}, but the manifest says "
            f"{bundle.version[:12]}",
        )
    return policy_set


def verify_bundle(
    data: bytes | Bundle,
    key: VerifyKeyLike | None,
    *,
    dest: Path | None = None,
    registry: RegistryLike | None = None,
) -> tuple[Bundle, PolicySet]:
    """Every check, in trust order: signature (skipped only when ``key`` is None, as the control
    plane does for an upload it is about to sign), file hashes, then the policy load (into
    ``dest``, or a temporary directory)."""
    bundle = data if isinstance(data, Bundle) else Bundle.from_bytes(data)
    if key is not None:
        try:
            verify_signature(bundle, key)
        except AuditKeyError as exc:
            raise BundleError("wrong_key", f"pinned public key unusable: {exc}") from None
    check_contents(bundle)
    if dest is not None:
        return bundle, load_bundle(bundle, dest, registry=registry)
    with tempfile.TemporaryDirectory(prefix="checkstream-bundle-") as tmp:
        return bundle, load_bundle(bundle, Path(tmp), registry=registry)


# --------------------------------------------------------------------------- internals


def _load_files(bundle: Bundle, dest: Path, registry: RegistryLike | None) -> PolicySet:
    bundle.unpack(dest)
    if not any(p.endswith((".yaml", ".yml")) for p in bundle.files):
        raise BundleError("invalid_policy", "bundle holds no policy files (*.yaml)")
    try:
        return load_policy_set(dest, registry=registry)
    except PolicyError as exc:
        # File names inside the unpack directory mean nothing to the reader; show bundle paths.
        message = str(exc).replace(str(dest) + os.sep, "")
        raise BundleError("invalid_policy", f"policy does not load: {message}") from None


def _manifest(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BundleError("malformed", "bundle.manifest must be an object")
    if set(value) != {"format", "policy_version", "content_sha256", "files"}:
        raise BundleError(
            "malformed",
            "manifest must have exactly format, policy_version, content_sha256 and files",
        )
    if value["format"] != BUNDLE_FORMAT:
        raise BundleError("malformed", f"manifest format is {value['format']!r}")
    for name in ("policy_version", "content_sha256"):
        if not isinstance(value[name], str) or not _SHA256.match(value[name]):
            raise BundleError("malformed", f"manifest.{name} must be 64 lowercase hex digits")
    files = value["files"]
    if not isinstance(files, dict):
        raise BundleError("malformed", "manifest.files must be an object")
    for path, entry in files.items():
        _check_path(path)
        if (
            not isinstance(entry, dict)
            or set(entry) != {"sha256", "size"}
            or not isinstance(entry["sha256"], str)
            or not _SHA256.match(entry["sha256"])
            or not isinstance(entry["size"], int)
            or isinstance(entry["size"], bool)
            or entry["size"] < 0
        ):
            raise BundleError("malformed", f"manifest.files[{path!r}] must be {{sha256, size}}")
    return value


def _check_path(path: Any) -> None:
    # Paths become file names on the node: nothing absolute, no "..", no hidden parts.
    if not isinstance(path, str) or not path or "\\" in path or "\x00" in path:
        raise BundleError("malformed", f"unsafe file path {path!r} in bundle")
    parts = PurePosixPath(path).parts
    if (
        path.startswith("/")
        or any(p in ("", ".", "..") or p.startswith(".") for p in parts)
        or "/".join(parts) != path
    ):
        raise BundleError("malformed", f"unsafe file path {path!r} in bundle")


def _b64(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BundleError("malformed", f"{where} is not valid base64") from None
