"""Checking one uploaded segment of a node's decision log against what the control plane holds.

A segment is a run of whole lines of the node's hash-chained log (:mod:`checkstream.audit.chain`),
byte for byte. It is accepted only if every line is an intact entry (canonical JSON whose hash
matches; a MAC or signature named in ``auth`` must be present) and the run continues the node's
stored chain exactly: the first entry's ``seq`` is one past the last stored and its ``prev`` is
that entry's hash (or seq 0 and the genesis hash for a node's first segment), and inside the
segment each entry links to the one before. The checks are the same as ``checkstream audit
verify``'s, so the stored log of a node verifies with that command as well.

Each refusal has its own reason, so a node (and the operator reading the fleet page) can tell a
retry of something already stored from records that went missing or were altered:

=====================  ======  ==============================================================
reason                 status  meaning
=====================  ======  ==============================================================
``malformed_segment``  422     empty, not newline-terminated, or a line that is not a JSON object
``tampered_record``    422     a line whose hash (or form) does not match its content
``broken_chain``       422     inside the segment, a seq skipped or repeated, or a bad ``prev``
``chain_start``        409     the node's first segment does not start the chain at seq 0
``replayed_segment``   409     starts at or before the last stored seq (already stored)
``chain_gap``          409     starts after the next expected seq: records are missing
``chain_fork``         409     the right seq, but it does not link to the stored record
``seal_change``        409     sealed with other keys than the stored chain (HMAC/Ed25519 ids)
=====================  ======  ==============================================================
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from checkstream.audit import GENESIS_HASH
from checkstream.audit.chain import Checker, Entry, EntryError

__all__ = ["ChainHead", "CheckedSegment", "SegmentRefused", "check_segment"]


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The last record the control plane holds for a node."""

    seq: int
    hash: str
    auth: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class CheckedSegment:
    data: bytes
    first_seq: int
    last_seq: int
    last_hash: str
    first_ts: str
    last_ts: str
    records: int
    auth: Mapping[str, str]

    @property
    def head(self) -> ChainHead:
        return ChainHead(self.last_seq, self.last_hash, self.auth)


class SegmentRefused(Exception):
    def __init__(self, status: Literal[409, 422], reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


def _span(first: int, last: int) -> str:
    return f"seq {first}" if first == last else f"seq {first}..{last}"


def _entry(checker: Checker, line: bytes, number: int) -> Entry:
    try:
        return checker.check(line)
    except EntryError as exc:
        try:
            parsed = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            parsed = None
        if not isinstance(parsed, dict):
            raise SegmentRefused(422, "malformed_segment",
                                 f"line {number} is not a JSON object (a log entry)") from None
        seq = parsed.get("seq")
        raise SegmentRefused(422, "tampered_record",
                             f"line {number} (seq {seq!r}): {exc}") from None


def _check_start(entry: Entry, head: ChainHead | None) -> None:
    if head is None:
        if entry.seq != 0 or entry.prev != GENESIS_HASH:
            raise SegmentRefused(
                409, "chain_start",
                f"no evidence is stored for this node yet, so its first segment must start the "
                f"chain (seq 0, linked to the genesis hash); this one starts at seq {entry.seq}")
        return
    if entry.seq <= head.seq:
        raise SegmentRefused(
            409, "replayed_segment",
            f"the segment starts at seq {entry.seq}, but {_span(0, head.seq)} are already "
            f"stored: a replayed or duplicated upload (next expected: seq {head.seq + 1})")
    if entry.seq > head.seq + 1:
        raise SegmentRefused(
            409, "chain_gap",
            f"the segment starts at seq {entry.seq}, but the last stored is seq {head.seq}: "
            f"records {_span(head.seq + 1, entry.seq - 1)} are missing")
    if entry.prev != head.hash:
        raise SegmentRefused(
            409, "chain_fork",
            f"seq {entry.seq} does not link to the stored seq {head.seq} (its prev is not that "
            "record's hash): a different or rewritten log")
    if dict(entry.auth) != dict(head.auth):
        raise SegmentRefused(
            409, "seal_change",
            f"sealed with {dict(entry.auth) or 'no keys'}, the stored chain with "
            f"{dict(head.auth) or 'no keys'}")


def check_segment(data: bytes, head: ChainHead | None, *, first_line: int = 1) -> CheckedSegment:
    """Check ``data`` (whole lines) against the node's stored ``head``; raise
    :class:`SegmentRefused` with the first problem, else return what to store. ``first_line``
    numbers the lines in messages (a stored log re-checked in chunks)."""
    if not data:
        raise SegmentRefused(422, "malformed_segment", "the segment is empty")
    if not data.endswith(b"\n"):
        raise SegmentRefused(422, "malformed_segment",
                             "the segment does not end with a newline (cut off in transit?)")
    # No keys: the control plane checks hashes, links and that named seals are present; MACs and
    # signatures are checked by whoever holds the node's keys (`checkstream audit verify`).
    checker = Checker()
    first: Entry | None = None
    last: Entry | None = None
    for number, line in enumerate(data[:-1].split(b"\n"), start=first_line):
        if not line:
            raise SegmentRefused(422, "malformed_segment", f"line {number} is empty")
        entry = _entry(checker, line, number)
        if last is None:
            _check_start(entry, head)
            first = entry
        elif entry.seq != last.seq + 1:
            raise SegmentRefused(
                422, "broken_chain",
                f"line {number}: seq {entry.seq} follows seq {last.seq} inside the segment")
        elif entry.prev != last.hash:
            raise SegmentRefused(
                422, "broken_chain",
                f"line {number}: seq {entry.seq} does not link to seq {last.seq} (record "
                "replaced or spliced)")
        elif dict(entry.auth) != dict(last.auth):
            raise SegmentRefused(422, "broken_chain",
                                 f"line {number}: sealed with other keys than the line before")
        last = entry
    assert first is not None and last is not None
    return CheckedSegment(
        data=data, first_seq=first.seq, last_seq=last.seq, last_hash=last.hash,
        first_ts=first.ts, last_ts=last.ts, records=last.seq - first.seq + 1, auth=dict(last.auth),
    )
