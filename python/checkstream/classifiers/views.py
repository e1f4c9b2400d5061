"""Alternative readings of a text for classifiers that attackers try to slip past.

An injection written in leetspeak, with zero-width characters or homoglyphs, base64, binary,
hex, ROT13, spaced-out letters or reversed is the same instruction to a model that decodes it,
but a different token sequence to a classifier. ``text_views`` returns the raw text plus every
reading that differs from it; a classifier with ``views`` configured scores them all in one
batch and keeps, per label, the highest score and the view it came from.

Only stdlib and the Rust normaliser: the build script loads this file by path to train and
evaluate on exactly what the runtime scores.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Literal

ViewName = Literal["normalized", "leetspeak", "decoded"]
VIEW_FAMILIES: tuple[ViewName, ...] = ("normalized", "leetspeak", "decoded")

# Decoded payloads shorter than this are noise ("SGk=" is "Hi"); longer blobs are cut.
_MIN_DECODED = 12
_MAX_DECODED = 4000
_MAX_CANDIDATES = 4

_B64 = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{16,}={0,2}(?![A-Za-z0-9+/=_-])")
_HEX = re.compile(r"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{2}[ :]?){12,}(?![0-9A-Fa-f])")
_BINARY = re.compile(r"(?<![01])(?:[01]{8}[ ]?){6,}(?![01])")
# Five or more single letters separated by spaces or dots: "i g n o r e", "s.y.s.t.e.m".
_SPACED = re.compile(r"(?<!\w)(?:[^\W\d_][ .]){4,}[^\W\d_](?!\w)")
# A leetspeak digit or symbol between letters or in front of them: "1gn0r3", "h@ck", "pr3v10us";
# not "base64", "mp3" or "x86_64". Words over 16 characters (blobs, hashes) do not count.
_LEET = re.compile(r"[^\W\d_][013457@$!|]+[^\W\d_]|(?<![\w@$!|])[013457@$!|]+[^\W\d_]")
_LEET_CHARS = frozenset("013457@$!|")
_TOKEN = re.compile(r"[\w@$!|]+")
_WORD = re.compile(
    r"(?<![\w@$!|])(?=[\w@$!|]{2,16}(?![\w@$!|]))"
    r"[\w@$!|]*(?:[^\W\d_][013457@$!|]+[^\W\d_]|^[013457@$!|]+[^\W\d_]"
    r"|(?<![\w@$!|])[013457@$!|]+[^\W\d_])"
)
_WORD = re.compile(r"[^\W\d_]+")

# The commonest English words: a text whose ROT13 or reversal has many more of them than the
# text itself was written that way on purpose.
_COMMON_WORDS = (
    "the be to of and a in that have i it for not on with he as you do at this but his by from"
    " they we say her she or an will my one all would there their what so up out if about who"
    " get which go me when make can like time no just him know take people into your good some"
    " could them see other than then now look only come its over think also back after use two"
    " how our work first well way even new want because any these give day most us is are was"
    " were been has had did does said"
)
_COMMON = frozenset(_COMMON_WORDS.split())


@lru_cache(maxsize=2)
def _normalizer(leetspeak: bool) -> object:
    from checkstream._core import Normalizer

    return Normalizer(leetspeak=leetspeak)


def _normalize(text: str, leetspeak: bool) -> str:
    return str(_normalizer(leetspeak).normalize(text))  # type: ignore[attr-defined]


def _plain(text: str) -> str:
    """What the uncased tokenizer sees anyway: case and whitespace runs do not matter."""
    return " ".join(text.casefold().split())


def _common_words(text: str) -> int:
    return sum(1 for w in _WORD.findall(text.casefold()) if w in _COMMON)


def _has_leetspeak(text: str) -> bool:
    if _LEET_CHARS.isdisjoint(text) or _LEET.search(text) is None:
        return False
    for chunk in text.split():
        if _LEET_CHARS.isdisjoint(chunk) or "://" in chunk or ("@" in chunk and "." in chunk):
            continue  # e-mail addresses and URLs are not leetspeak
        for token in _TOKEN.findall(chunk):
            if len(token) <= 16 and _LEET.search(token):
                return True
    return False


def _texty(raw: bytes) -> str | None:
    """``raw`` as text when it reads like language (not an image, key or hash)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(text) < _MIN_DECODED:
        return None
    printable = sum(ch.isprintable() or ch in "\n\t" for ch in text)
    letters = sum(ch.isalpha() for ch in text)
    if printable < 0.95 * len(text) or letters < 0.5 * len(text) or " " not in text.strip():
        return None
    return text[:_MAX_DECODED]


def _b64(blob: str) -> str | None:
    blob = blob.rstrip("=")
    padded = blob + "=" * (-len(blob) % 4)
    try:
        raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return None
    return _texty(raw)


def _hex(blob: str) -> str | None:
    digits = re.sub(r"[ :]", "", blob)
    if len(digits) % 2:
        return None
    try:
        return _texty(bytes.fromhex(digits))
    except ValueError:
        return None


def _binary(blob: str) -> str | None:
    bits = blob.replace(" ", "")
    return _texty(bytes(int(bits[i : i + 8], 2) for i in range(0, len(bits) - 7, 8)))


def decoded_views(text: str) -> list[tuple[str, str]]:
    """(how, decoded text) for each encoded payload found in ``text``."""
    out: list[tuple[str, str]] = []
    for how, pattern, decode in (("base64", _B64, _b64), ("hex", _HEX, _hex),
                                 ("binary", _BINARY, _binary)):  # fmt: skip
        for m in pattern.finditer(text):
            if len(out) >= _MAX_CANDIDATES:
                break
            decoded = decode(m.group(0).strip())
            if decoded is not None:
                out.append((how, decoded))
    for m in _SPACED.finditer(text):
        if len(out) >= _MAX_CANDIDATES:
            break
        joined = re.sub(r"[ .]", "", m.group(0))
        out.append(("spaced", text[: m.start()] + joined + text[m.end() :]))
    words = text.split()
    base = _common_words(text)
    # Plain English (a quarter or more common words) was not written in ROT13 or backwards.
    if base * 4 < len(words):
        rot = codecs.encode(text, "rot13")
        if _common_words(rot) >= max(2, 2 * base + 1):
            out.append(("rot13", rot))
        rev = text[::-1]
        if _common_words(rev) >= max(2, 2 * base + 1):
            out.append(("reversed", rev))
    return out


def text_views(text: str, families: Iterable[ViewName]) -> list[tuple[str, str]]:
    """``[("raw", text), (name, view), ...]``: the raw text first, then each distinct reading.

    ``normalized``: NFKC + case fold + zero-width/format characters dropped + confusable
    skeleton (homoglyphs). ``leetspeak``: the same with leetspeak digits read as letters, only
    when some word mixes the two. ``decoded``: base64 / hex / binary payloads, spaced-out
    letters, ROT13 and reversed text, when they decode to language.
    """
    views: list[tuple[str, str]] = [("raw", text)]
    seen = {_plain(text)}

    def add(name: str, view: str) -> None:
        key = _plain(view)
        if key and key not in seen:
            seen.add(key)
            views.append((name, view))

    wanted = set(families)
    if "normalized" in wanted:
        add("normalized", _normalize(text, False))
    if "leetspeak" in wanted and _has_leetspeak(text):
        add("leetspeak", _normalize(text, True))
    if "decoded" in wanted:
        for how, view in decoded_views(text):
            add(how, view)
            if "normalized" in wanted:
                add(how, _normalize(view, False))
    return views
