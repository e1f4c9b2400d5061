"""``find_pii`` (spans in finished text) and ``pii_hold_from`` (what a stream must keep back)."""

from __future__ import annotations

import bisect
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


def _valid_ends(rec: Recognizer, text: str, start: int, end: int) -> list[int]:
    """Ends of the validated spans that start at ``start`` and end by ``end``, longest first.

    Greedy patterns may run one group too far ("card 4111 1111 1111 1111 12", or a second phone
    number written straight after the first), so shorter candidates ending at a group boundary
    are validated too; ``find_pii``'s overlap resolution picks among them ("0113 496 0000 020"
    parses as a US call to Spain, but "0113 496 0000" then "020 ..." covers more text).
    """
    if rec.validate is None:
        return [end]
    candidate = text[start:end]
    ends = [end] if rec.validate(candidate) else []
    if not rec.trim:
        return ends
    for cut in range(len(candidate) - 1, 0, -1):
        at_group_end = candidate[cut] in _SEPARATORS and candidate[cut - 1] not in _SEPARATORS
        if at_group_end and rec.validate(candidate[:cut]):
            ends.append(start + cut)
    return ends


def _next_group_start(text: str, start: int, end: int) -> int | None:
    """The first group inside ``text[start:end]`` after ``start`` that follows a space.

    Candidates are re-proposed only from space-separated groups: "12 4111 1111 1111 1111" holds
    a card after a count, while the "01" of "2024-01-15" starts nothing.
    """
    i = text.find(" ", start, end)
    while i != -1:
        j = i + 1
        while j < end and text[j] == " ":
            j += 1
        if j < end:
            return j
        i = text.find(" ", j, end)
    return None


def _spans(rec: Recognizer, text: str) -> list[tuple[int, int]]:
    """Validated spans of one recognizer: every valid one at each candidate start.

    For the greedy digit/group recognizers (``trim``), every space-separated group of a
    rejected or accepted candidate is also tried as a start, so two numbers written side by
    side are both found, a number after an unrelated one ("42 020 7946 0958") is found on its
    own, and a bogus span that borrows a neighbour's digits loses to the longer real one in
    ``find_pii``'s overlap resolution.
    """
    out: list[tuple[int, int]] = []
    pos = 0
    n = len(text)
    while pos < n:
        m = rec.pattern.search(text, pos)
        if m is None:
            break
        start = m.start()
        out.extend((start, end) for end in _valid_ends(rec, text, start, m.end()) if end > start)
        nxt = _next_group_start(text, start, m.end()) if rec.trim else None
        pos = nxt if nxt is not None else max(m.end(), start + 1)
    return out


def find_pii(text: str, entities: Collection[str] | None = None) -> list[PiiMatch]:
    """All PII spans in ``text`` (char offsets), non-overlapping, ordered by start.

    ``entities`` restricts the search to those types (see ``PII_ENTITY_TYPES``); an unknown
    name raises ``ValueError``. Where candidates overlap, the set covering the most text wins
    (a phone number with its country code over the ten digits inside it), then the more
    specific recognizer (an NHS number over a phone number of the same digits).
    """
    if not isinstance(text, str):
        raise TypeError(f"find_pii expects str, got {type(text).__name__}")
    candidates: list[tuple[int, int, int, str]] = []
    for rec in _selected(entities):
        for start, end in _spans(rec, text):
            candidates.append((rec.priority, start, end, rec.entity))
    return [
        PiiMatch(entity, start, end, placeholder_for(entity))
        for start, end, entity in _resolve_overlaps(candidates)
    ]


def _resolve_overlaps(candidates: list[tuple[int, int, int, str]]) -> list[tuple[int, int, str]]:
    """The non-overlapping subset of (priority, start, end, entity) covering the most text.

    Ties go to the more specific recognizers (lower priority numbers), then to the earlier
    spans. Covering the most text (rather than taking the longest span first) keeps a span that
    borrows digits from two neighbours ("…0005 (001" between an NHS number and an SSN) from
    evicting both, while a number with its country code still beats the digits inside it.
    """
    if not candidates:
        return []
    items = sorted(set(candidates), key=lambda c: (c[2], c[1], c[0]))
    ends = [c[2] for c in items]
    # best[i]: (covered chars, -sum of priorities, -sum of starts) over items[:i]
    best: list[tuple[int, int, int]] = [(0, 0, 0)]
    took: list[bool] = []
    prev: list[int] = []
    for priority, start, end, _ in items:
        j = bisect.bisect_right(ends, start, 0, len(prev))
        a, b, c = best[j]
        with_it = (a + end - start, b - priority, c - start)
        prev.append(j)
        if with_it > best[-1]:
            best.append(with_it)
            took.append(True)
        else:
            best.append(best[-1])
            took.append(False)
    chosen: list[tuple[int, int, str]] = []
    i = len(items)
    while i > 0:
        if took[i - 1]:
            _, start, end, entity = items[i - 1]
            chosen.append((start, end, entity))
            i = prev[i - 1]
        else:
            i -= 1
    chosen.reverse()
    return chosen


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
