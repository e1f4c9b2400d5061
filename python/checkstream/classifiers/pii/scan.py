"""``find_pii`` (spans in finished text) and ``pii_hold_from`` (what a stream must keep back)."""

from __future__ import annotations

from collections.abc import Collection

import regex

from checkstream.classifiers.pii.recognizers import (
    _HOLD_SCAN_CHARS,
    RECOGNIZERS,
    PiiMatch,
    Recognizer,
    _selected,
    placeholder_for,
)

_SEPARATORS = " -.()"
_PEM = regex.compile(
    r"-----BEGIN [A-Z ]*(?:PRIVATE KEY-----(?:[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"
    r"|[A-Za-z0-9+/=\s]*))?"
)


def _confirm(rec: Recognizer, text: str, start: int, end: int) -> int | None:
    """End of the validated span starting at ``start``, or None.

    Greedy patterns may run one group too far ("card 4111 1111 1111 1111 12"), so when the whole
    candidate fails, shorter candidates ending at a separator are tried, longest first.
    """
    if rec.validate is None:
        return end
    candidate = text[start:end]
    if rec.validate(candidate):
        return end
    if not rec.trim:
        return None
    for cut in range(len(candidate) - 1, 0, -1):
        at_group_end = candidate[cut] in _SEPARATORS and candidate[cut - 1] not in _SEPARATORS
        if at_group_end and rec.validate(candidate[:cut]):
            return start + cut
    return None


def find_pii(text: str, entities: Collection[str] | None = None) -> list[PiiMatch]:
    """All PII spans in ``text`` (char offsets), non-overlapping, ordered by start.

    ``entities`` restricts the search to those types (see ``PII_ENTITY_TYPES``); an unknown
    name raises ``ValueError``. Where two recognizers claim overlapping text, the longer span
    wins (a phone number with its country code over the ten digits inside it), then the more
    specific recognizer (an NHS number over a phone number of the same digits).
    """
    if not isinstance(text, str):
        raise TypeError(f"find_pii expects str, got {type(text).__name__}")
    candidates: list[tuple[int, int, int, str]] = []
    for rec in _selected(entities):
        for m in rec.pattern.finditer(text):
            end = _confirm(rec, text, m.start(), m.end())
            if end is not None and end > m.start():
                candidates.append((rec.priority, m.start(), end, rec.entity))
    candidates.sort(key=lambda c: (-(c[2] - c[1]), c[0], c[1]))
    taken: list[tuple[int, int]] = []
    found: list[PiiMatch] = []
    for _, start, end, entity in candidates:
        if any(start < t_end and t_start < end for t_start, t_end in taken):
            continue
        taken.append((start, end))
        found.append(PiiMatch(entity, start, end, placeholder_for(entity)))
    found.sort(key=lambda m: m.start)
    return found


def pii_hold_from(text: str, entities: Collection[str] | None = None) -> int | None:
    """Earliest index from which a suffix of ``text`` could still grow into a PII entity.

    A streaming caller releases ``text[:index]`` and keeps the rest until more text arrives
    (or the stream ends, when ``find_pii`` decides). None means nothing needs holding.
    Only the trailing ``_HOLD_SCAN_CHARS`` characters are examined, except for an unfinished
    PEM private key, which is held from its BEGIN line however long it gets.
    """
    if not isinstance(text, str):
        raise TypeError(f"pii_hold_from expects str, got {type(text).__name__}")
    recs = _selected(entities)
    n = len(text)
    if n == 0:
        return None
    base = max(0, n - _HOLD_SCAN_CHARS)
    earliest: int | None = None
    for rec in recs:
        for m in rec.grow.finditer(text, base, partial=True, overlapped=True):
            if m.end() == n and m.start() < n and (earliest is None or m.start() < earliest):
                earliest = m.start()
    if any(r.entity == "SECRET" for r in recs):
        begin = text.rfind("-----BEGIN")
        if begin != -1 and (earliest is None or begin < earliest):
            if _PEM.fullmatch(text, begin, partial=True) is not None:
                earliest = begin
        elif begin == -1 and earliest is None:
            tail = text.rfind("-", base)
            if tail != -1:
                # "-", "--", ..., "-----BEGI": the header itself may still be arriving.
                dash = tail
                while dash > 0 and text[dash - 1] == "-":
                    dash -= 1
                if _PEM.fullmatch(text, dash, partial=True) is not None:
                    earliest = dash
    return earliest


def redact_pii(text: str, entities: Collection[str] | None = None) -> str:
    """``text`` with every PII span replaced by its placeholder."""
    out: list[str] = []
    pos = 0
    for m in find_pii(text, entities):
        out.append(text[pos : m.start])
        out.append(m.placeholder)
        pos = m.end
    out.append(text[pos:])
    return "".join(out)


__all__ = ["RECOGNIZERS", "PiiMatch", "find_pii", "pii_hold_from", "redact_pii"]
