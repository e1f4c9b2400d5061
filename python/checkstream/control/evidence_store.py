"""Where shipped evidence lives: one append-only log file per node, indexed in SQLite.

::

    DATA/evidence/<node_id>/decisions.jsonl   the node's decision log, segment after segment

The file holds exactly the node's own lines, so it is a log ``checkstream audit verify`` reads
as is. A segment is appended (and ``fsync``-ed) first and recorded in ``evidence_segments``
second; a crash between the two leaves bytes past the recorded length, which are cut off at the
next start and before the next append. What the table records is therefore the truth, and the
file never holds a record the chain check did not pass.

Refused uploads are recorded too (``evidence_refusals``): a node whose segments keep failing the
chain check is something an operator must see.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from checkstream.control.evidence_chain import ChainHead, CheckedSegment

__all__ = ["EvidenceStore", "NodeEvidence", "StoredSegment"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS evidence_segments (
    id INTEGER PRIMARY KEY AUTOINCREMENT, node_id TEXT NOT NULL, first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL, last_hash TEXT NOT NULL, auth TEXT NOT NULL,
    offset INTEGER NOT NULL, length INTEGER NOT NULL, records INTEGER NOT NULL,
    first_ts TEXT NOT NULL, last_ts TEXT NOT NULL, received_at REAL NOT NULL,
    UNIQUE (node_id, first_seq));
CREATE TABLE IF NOT EXISTS evidence_refusals (
    id INTEGER PRIMARY KEY AUTOINCREMENT, node_id TEXT NOT NULL, at REAL NOT NULL,
    reason TEXT NOT NULL, message TEXT NOT NULL);
"""
LOG_NAME = "decisions.jsonl"


@dataclass(frozen=True, slots=True)
class StoredSegment:
    node_id: str
    first_seq: int
    last_seq: int
    last_hash: str
    offset: int
    length: int
    received_at: float


@dataclass(frozen=True, slots=True)
class NodeEvidence:
    """What the control plane holds of one node's log, and its most recent refusal."""

    node_id: str
    records: int
    last_seq: int | None
    last_ts: str | None
    bytes: int
    segments: int
    last_received: float | None
    refusals: int
    last_refusal: str | None  # "reason: message"


class EvidenceStore:
    def __init__(self, root: Path, db: sqlite3.Connection, lock: threading.Lock) -> None:
        self.root = root
        self._db = db
        self._lock = lock
        with self._lock, self._db:
            self._db.executescript(_SCHEMA)
        for node_id in self.node_ids():
            self._cut_to_committed(node_id)

    def path(self, node_id: str) -> Path:
        return self.root / node_id / LOG_NAME  # node ids are checked by the server's NODE_ID

    def node_ids(self) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT DISTINCT node_id FROM evidence_segments ORDER BY node_id").fetchall()
        return [r[0] for r in rows]

    def committed(self, node_id: str) -> int:
        """Bytes of the node's file that are recorded (and were checked)."""
        with self._lock:
            row = self._db.execute(
                "SELECT offset + length FROM evidence_segments WHERE node_id = ? "
                "ORDER BY last_seq DESC LIMIT 1", (node_id,)).fetchone()
        return int(row[0]) if row else 0

    def head(self, node_id: str) -> ChainHead | None:
        with self._lock:
            row = self._db.execute(
                "SELECT last_seq, last_hash, auth FROM evidence_segments WHERE node_id = ? "
                "ORDER BY last_seq DESC LIMIT 1", (node_id,)).fetchone()
        return ChainHead(row[0], row[1], json.loads(row[2])) if row else None

    def _cut_to_committed(self, node_id: str) -> None:
        path = self.path(node_id)
        committed = self.committed(node_id)
        if path.exists() and path.stat().st_size > committed:
            os.truncate(path, committed)  # an append the table never recorded (a crash)

    def append(self, node_id: str, segment: CheckedSegment) -> StoredSegment:
        """Append a checked segment. The caller holds the node's lock from the chain check on,
        so the head it checked against is still the head."""
        path = self.path(node_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._cut_to_committed(node_id)
        offset = self.committed(node_id)
        with path.open("ab") as f:
            f.write(segment.data)
            f.flush()
            os.fsync(f.fileno())
        now = time.time()
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO evidence_segments (node_id, first_seq, last_seq, last_hash, auth, "
                "offset, length, records, first_ts, last_ts, received_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (node_id, segment.first_seq, segment.last_seq, segment.last_hash,
                 json.dumps(dict(segment.auth), sort_keys=True), offset, len(segment.data),
                 segment.records, segment.first_ts, segment.last_ts, now),
            )
        return StoredSegment(node_id, segment.first_seq, segment.last_seq, segment.last_hash,
                             offset, len(segment.data), now)

    def refused(self, node_id: str, reason: str, message: str) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO evidence_refusals (node_id, at, reason, message) VALUES (?, ?, ?, ?)",
                (node_id, time.time(), reason, message[:500]))

    def lines(self, node_id: str) -> Iterator[bytes]:
        """The node's stored lines (with their newlines), up to the committed length."""
        remaining = self.committed(node_id)
        if not remaining:
            return
        with self.path(node_id).open("rb") as f:
            for line in f:
                if remaining <= 0:
                    break
                yield line[:remaining]
                remaining -= len(line)

    def summary(self) -> dict[str, NodeEvidence]:
        with self._lock:
            held = self._db.execute(
                "SELECT node_id, SUM(records), MAX(last_seq), MAX(last_ts), SUM(length), COUNT(*), "
                "MAX(received_at) FROM evidence_segments GROUP BY node_id").fetchall()
            refusals = self._db.execute(
                "SELECT node_id, COUNT(*), (SELECT reason || ': ' || message FROM "
                "evidence_refusals r2 WHERE r2.node_id = r.node_id ORDER BY id DESC LIMIT 1) "
                "FROM evidence_refusals r GROUP BY node_id").fetchall()
        out: dict[str, NodeEvidence] = {}
        for node_id, records, last_seq, last_ts, size, segments, received in held:
            out[node_id] = NodeEvidence(node_id, int(records), last_seq, last_ts, int(size),
                                        int(segments), received, 0, None)
        for node_id, count, last in refusals:
            base = out.get(node_id) or NodeEvidence(node_id, 0, None, None, 0, 0, None, 0, None)
            out[node_id] = replace(base, refusals=int(count), last_refusal=last)
        return out
