"""The hash chain: how one decision record becomes one sealed line of the log.

Each line of a log file is the canonical JSON of an *entry*::

    {"auth": {"ed25519": KID, "hmac-sha256": KID},   # which keys sealed it ({} if none)
     "hash": SHA256(body),                          # hex
     "kind": "decision" | "recovery",
     "mac":  HMAC-SHA256(hmac_key, digest),         # hex, only with an HMAC key
     "prev": hash of the previous entry,            # GENESIS_HASH for the very first
     "record": {...},                               # the decision record, whole
     "seq":  0, 1, 2, ...                           # position in the chain, across files
     "sig":  Ed25519(digest),                       # hex, only with a signing key
     "ts":   "2026-11-27T06:11:31.123456Z",         # when the log accepted the record (UTC)
     "v":    1}

``body`` is the canonical JSON of the entry without ``hash``, ``mac`` and ``sig``; ``digest`` is
the raw 32 bytes of ``hash``. The whole record is inside the body, so changing any field of any
record changes its hash, and every later entry names its predecessor's hash in ``prev``. ``seq``
makes a deleted or reordered entry show up as exactly that rather than as a generic broken link.
The ``auth`` block is inside the body, so stripping a MAC or signature cannot pass for an
unsealed log.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from checkstream.audit.canonical import canonical_json, canonical_json_parsed
from checkstream.audit.errors import CanonicalError
from checkstream.audit.keys import hmac_key_id, public_key_id

__all__ = [
    "FORMAT_VERSION",
    "GENESIS_HASH",
    "KIND_DECISION",
    "KIND_RECOVERY",
    "Checker",
    "EntryError",
    "Sealer",
]

FORMAT_VERSION: Final = 1
GENESIS_HASH: Final = "0" * 64
KIND_DECISION: Final = "decision"
KIND_RECOVERY: Final = "recovery"
_KINDS = frozenset({KIND_DECISION, KIND_RECOVERY})
_AUTH_HMAC: Final = "hmac-sha256"
_AUTH_ED25519: Final = "ed25519"
_SEAL_KEYS = ("hash", "mac", "sig")
_BODY_KEYS = frozenset({"auth", "kind", "prev", "record", "seq", "ts", "v"})


class EntryError(ValueError):
    """One line of the log is not a valid, intact entry; the message says why."""


_enc = canonical_json_parsed


def _body_of(line: bytes, obj: dict[str, Any]) -> bytes:
    """The hashed body of a canonical line: the line without its hash, mac and sig fields.

    Cutting the three fields out at positions computed from the parsed values (and checked byte
    for byte) saves serialising the record again; any surprise falls back to re-encoding.
    """
    start = len(b'{"auth":') + len(_enc(obj["auth"]))
    hash_field = b',"hash":' + _enc(obj["hash"])
    parts = [line[:start]]
    pos = start + len(hash_field)
    ok = line[start:pos] == hash_field
    if ok and "mac" in obj:
        mac_at = pos + len(b',"kind":' + _enc(obj["kind"]))
        mac_field = b',"mac":' + _enc(obj["mac"])
        ok = line[mac_at : mac_at + len(mac_field)] == mac_field
        parts.append(line[pos:mac_at])
        pos = mac_at + len(mac_field)
    if ok and "sig" in obj:
        tail = b',"ts":' + _enc(obj["ts"]) + b',"v":' + _enc(obj["v"]) + b"}"
        sig_field = b',"sig":' + _enc(obj["sig"])
        sig_at = len(line) - len(tail) - len(sig_field)
        ok = sig_at >= pos and line[sig_at : sig_at + len(sig_field)] == sig_field
        parts.append(line[pos:sig_at])
        pos = sig_at + len(sig_field)
    if not ok:
        return _enc({k: v for k, v in obj.items() if k not in _SEAL_KEYS})
    parts.append(line[pos:])
    return b"".join(parts)


class Sealer:
    """Turns records into sealed lines, with an optional HMAC key and/or Ed25519 signing key."""

    def __init__(
        self, *, hmac_key: bytes | None = None, signing_key: Ed25519PrivateKey | None = None
    ) -> None:
        self._hmac_key = hmac_key
        self._signing_key = signing_key
        auth: dict[str, str] = {}
        if hmac_key is not None:
            auth[_AUTH_HMAC] = hmac_key_id(hmac_key)
        if signing_key is not None:
            auth[_AUTH_ED25519] = public_key_id(signing_key.public_key())
        self.auth: Final[Mapping[str, str]] = auth
        self._auth_bytes = canonical_json(auth)

    def seal(self, *, kind: str, seq: int, prev: str, ts: str, record: bytes) -> tuple[bytes, str]:
        """Return ``(line, hash)``: the entry's canonical JSON plus newline, and its hash.

        ``record`` must already be canonical JSON (from :func:`canonical_json`); ``kind``,
        ``prev`` and ``ts`` must need no JSON escaping (they are names, hex and ISO times).
        """
        # The line is assembled from already-canonical parts in sorted key order, the same bytes
        # canonical_json() would give for the decoded entry (tests check this), without
        # serialising the record a second time.
        auth, kind_b, prev_b, ts_b = self._auth_bytes, kind.encode(), prev.encode(), ts.encode()
        body = b'{"auth":%s,"kind":"%s","prev":"%s","record":%s,"seq":%d,"ts":"%s","v":%d}' % (
            auth,
            kind_b,
            prev_b,
            record,
            seq,
            ts_b,
            FORMAT_VERSION,
        )
        digest = hashlib.sha256(body).digest()
        digest_hex = digest.hex()
        mac = b""
        if self._hmac_key is not None:
            mac = b',"mac":"%s"' % hmac.digest(self._hmac_key, digest, "sha256").hex().encode()
        sig = b""
        if self._signing_key is not None:
            sig = b',"sig":"%s"' % self._signing_key.sign(digest).hex().encode()
        line = (
            b'{"auth":%s,"hash":"%s","kind":"%s"%s,"prev":"%s","record":%s,"seq":%d%s,"ts":"%s",'
            b'"v":%d}\n'
        ) % (auth, digest_hex.encode(), kind_b, mac, prev_b, record, seq, sig, ts_b, FORMAT_VERSION)
        return line, digest_hex

    def seal_head(self, *, seq: int, hash: str, file: str, ts: str) -> bytes:
        """Return the head file's content: the last sealed (seq, hash), sealed like an entry."""
        body = {"auth": dict(self.auth), "file": file, "hash": hash, "seq": seq, "ts": ts, "v": 1}
        digest = hashlib.sha256(canonical_json(body)).digest()
        sealed: dict[str, Any] = {"head": body}
        if self._hmac_key is not None:
            sealed["mac"] = hmac.new(self._hmac_key, digest, hashlib.sha256).hexdigest()
        if self._signing_key is not None:
            sealed["sig"] = self._signing_key.sign(digest).hex()
        return canonical_json(sealed) + b"\n"


@dataclass(frozen=True, slots=True)
class Head:
    """What the head file says: the last entry the writer sealed, and when."""

    seq: int
    hash: str
    file: str
    ts: str


@dataclass(frozen=True, slots=True)
class Entry:
    """A parsed, intact entry (its hash and any MAC/signature checked)."""

    seq: int
    prev: str
    hash: str
    kind: str
    ts: str
    auth: Mapping[str, str]
    record: Mapping[str, Any]


class Checker:
    """Checks single lines: canonical form, hash, and the MAC/signature for the keys it holds."""

    def __init__(
        self, *, hmac_key: bytes | None = None, public_key: Ed25519PublicKey | None = None
    ) -> None:
        self._hmac_key = hmac_key
        self._public_key = public_key
        self._hmac_kid = hmac_key_id(hmac_key) if hmac_key is not None else None
        self._ed_kid = public_key_id(public_key) if public_key is not None else None

    def check(self, line: bytes) -> Entry:
        """Parse and check one line (without its newline); raise :class:`EntryError` if bad."""
        try:
            obj = json.loads(line)
        except (ValueError, UnicodeDecodeError) as exc:
            raise EntryError(f"not valid JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise EntryError("not a JSON object")
        missing = sorted((_BODY_KEYS | {"hash"}) - obj.keys())
        if missing:
            raise EntryError(f"missing field(s) {', '.join(missing)}")
        unknown = sorted(obj.keys() - _BODY_KEYS - set(_SEAL_KEYS))
        if unknown:
            raise EntryError(f"unknown field(s) {', '.join(unknown)}")
        if obj["v"] != FORMAT_VERSION:
            raise EntryError(f"format version {obj['v']!r}, this verifier reads {FORMAT_VERSION}")
        try:
            canonical = canonical_json_parsed(obj)
        except ValueError as exc:  # NaN / Infinity literals
            raise EntryError(f"not canonical JSON ({exc})") from None
        if canonical != line:
            raise EntryError("line is not in canonical form (edited by hand?)")
        body = _body_of(line, obj)
        digest = hashlib.sha256(body).digest()
        if not isinstance(obj["hash"], str) or not hmac.compare_digest(digest.hex(), obj["hash"]):
            raise EntryError("hash does not match the content (record modified)")
        seq, prev, kind, ts, auth, record = (
            obj["seq"],
            obj["prev"],
            obj["kind"],
            obj["ts"],
            obj["auth"],
            obj["record"],
        )
        if type(seq) is not int or seq < 0:
            raise EntryError(f"seq {seq!r} is not a non-negative integer")
        if not isinstance(prev, str) or len(prev) != 64:
            raise EntryError("prev is not a SHA-256 hex digest")
        if kind not in _KINDS:
            raise EntryError(f"unknown kind {kind!r}")
        if not isinstance(ts, str) or not isinstance(record, dict) or not isinstance(auth, dict):
            raise EntryError("ts, record or auth has the wrong type")
        self._check_seals(obj, auth, digest)
        return Entry(
            seq=seq, prev=prev, hash=obj["hash"], kind=kind, ts=ts, auth=auth, record=record
        )

    def check_head(self, data: bytes) -> Head:
        """Parse and check a head file's content; raise :class:`EntryError` if bad."""
        try:
            obj = json.loads(data)
            body = obj["head"]
            seq, hash_, file, ts, auth = (
                body["seq"],
                body["hash"],
                body["file"],
                body["ts"],
                body["auth"],
            )
        except (ValueError, UnicodeDecodeError, KeyError, TypeError) as exc:
            raise EntryError(f"head file is malformed ({exc!r})") from None
        if type(seq) is not int or not isinstance(hash_, str) or not isinstance(auth, dict):
            raise EntryError("head file has fields of the wrong type")
        try:
            digest = hashlib.sha256(canonical_json(body)).digest()
        except CanonicalError as exc:
            raise EntryError(f"head file is not canonical JSON ({exc})") from None
        self._check_seals(obj, auth, digest)
        return Head(seq=seq, hash=hash_, file=str(file), ts=str(ts))

    def _check_seals(self, obj: dict[str, Any], auth: dict[str, Any], digest: bytes) -> None:
        if self._hmac_key is not None:
            if _AUTH_HMAC not in auth or "mac" not in obj:
                raise EntryError("no HMAC, but the verifier was given an HMAC key")
            if auth[_AUTH_HMAC] != self._hmac_kid:
                raise EntryError(f"sealed with another HMAC key (key id {auth[_AUTH_HMAC]})")
            mac = hmac.digest(self._hmac_key, digest, "sha256").hex()
            if not isinstance(obj["mac"], str) or not hmac.compare_digest(mac, obj["mac"]):
                raise EntryError("bad HMAC")
        if self._public_key is not None:
            if _AUTH_ED25519 not in auth or "sig" not in obj:
                raise EntryError("no signature, but the verifier was given a public key")
            if auth[_AUTH_ED25519] != self._ed_kid:
                raise EntryError(f"signed with another key (key id {auth[_AUTH_ED25519]})")
            try:
                self._public_key.verify(bytes.fromhex(obj["sig"]), digest)
            except (InvalidSignature, ValueError, TypeError):
                raise EntryError("bad signature") from None
        # A seal named in ``auth`` must be present even when this verifier cannot check it, so a
        # stripped MAC or signature is caught by anyone.
        for name, field in ((_AUTH_HMAC, "mac"), (_AUTH_ED25519, "sig")):
            if (name in auth) != (field in obj):
                raise EntryError(f"'{field}' field and auth '{name}' do not agree (seal stripped?)")
