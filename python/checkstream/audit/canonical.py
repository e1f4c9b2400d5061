"""Canonical JSON: the exact bytes that the decision log hashes, signs and writes.

Sorted keys, no whitespace, UTF-8 (not ``\\u`` escapes), integers as integers and floats in
Python's shortest round-trip form. NaN and infinities are rejected (JSON has no such numbers, and
``json`` would otherwise write ``NaN``, which other parsers refuse). Keys must be strings: ``json``
silently turns ``{1: x}`` into ``{"1": x}``, which would let two different records share bytes.

Because parsing a canonical line and serialising it again gives the same bytes, a verifier can
check a line without trusting how it was written.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from checkstream.audit.errors import CanonicalError

__all__ = ["CanonicalError", "canonical_json", "canonical_json_parsed"]


def _check(value: Any, path: str) -> None:
    # The walk exists to reject what ``json`` would accept silently or garble: non-str keys,
    # NaN/inf, lone surrogates, and objects that are not JSON at all.
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, str):
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise CanonicalError(path, f"string is not valid Unicode ({exc.reason})") from None
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CanonicalError(path, f"{value!r} is not a JSON number")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise CanonicalError(path, f"object key {key!r} is not a string")
            _check(key, f"{path}.{key}")
            _check(item, f"{path}.{key}")
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]")
        return
    raise CanonicalError(
        path, f"{type(value).__name__} is not JSON (use str, int, float, bool, None, list, dict)"
    )


def _mapping_as_dict(value: Any) -> dict[str, Any]:
    # Only reached for Mapping types other than dict (``_check`` has vetted everything else).
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


_ENCODER = json.JSONEncoder(
    sort_keys=True,
    separators=(",", ":"),
    ensure_ascii=False,
    allow_nan=False,
    default=_mapping_as_dict,
)


_LEAVES = frozenset({str, int, float, bool, type(None)})


def _plain(value: Any) -> bool:
    """True when every container is a dict/list/tuple, every key a str, every leaf a JSON scalar.

    The encoder already rejects NaN, infinities and foreign objects; this cheap pass covers what it
    would accept silently (non-str keys). Anything unusual sends the caller to the full check.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            if not all(map(_is_str, item)):
                return False
            children: Any = item.values()
        elif kind is list or kind is tuple:
            children = item
        else:
            return kind in _LEAVES
        for child in children:
            child_kind = type(child)
            if child_kind is dict or child_kind is list or child_kind is tuple:
                stack.append(child)
            elif child_kind not in _LEAVES:
                return False
    return True


_is_str = str.__instancecheck__


def canonical_json(value: Any) -> bytes:
    """Return the canonical JSON bytes of ``value``; raise :class:`CanonicalError` if none."""
    try:
        data = _ENCODER.encode(value).encode("utf-8")
    except (TypeError, ValueError) as exc:  # NaN, a foreign object, a lone surrogate, ...
        _check(value, "$")  # names the place
        raise CanonicalError("$", str(exc)) from None
    if not _plain(value):
        _check(value, "$")  # slow path: subclasses, other Mappings, or a non-str key
    return data


def canonical_json_parsed(value: Any) -> bytes:
    """Canonical bytes of a value fresh from ``json.loads`` (its keys are all str already).

    Raises ``ValueError`` for NaN or infinities, which ``json.loads`` accepts.
    """
    return _ENCODER.encode(value).encode("utf-8")
